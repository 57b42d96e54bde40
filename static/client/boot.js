// Booting: rtm.start fills the state of the world and names the socket and its cursor.
import { call } from './api.js';
import { state } from './store.js';

export async function boot() {
  const world = await call('rtm.start', { batch_presence_aware: true });
  state.self = world.self;
  state.team = world.team;
  state.users = new Map(world.users.map((u) => [u.id, u]));
  state.bots = new Map(world.bots.map((b) => [b.id, b]));
  state.emoji = world.emoji || {};
  state.channels = new Map();
  for (const channel of [...world.channels, ...world.groups, ...world.ims, ...world.mpims]) {
    state.channels.set(channel.id, channel);
  }
  // What was loaded before a resync may have missed events: load it again on demand.
  state.histories.clear();
  state.threads.clear();
  return { url: world.url, cursor: world.event_cursor };
}

export async function socketUrl() {
  const answer = await call('rtm.connect', { batch_presence_aware: true });
  return answer.url;
}
