// The client's state of the world and a tiny publish/subscribe for the views.

export const state = {
  self: null,
  team: null,
  users: new Map(), // user id -> Slack user shape
  bots: new Map(), // bot id -> Slack bot shape
  emoji: {}, // custom emoji: name -> url or "alias:name"
  channels: new Map(), // conversation id -> shape with unread_count, mention_count, last_read
  current: null, // id of the open conversation
  histories: new Map(), // conversation id -> History (messages.js)
  threads: new Map(), // "channel/thread_ts" -> History of the thread
  presence: new Map(), // user id -> "active" | "away"
  // conversation id, or "channel/thread_ts" for typing in a thread -> Map(user id -> expiry time)
  typing: new Map(),
};

// Whether the signed-in person is a team admin: what the server lets them change (archive any
// channel, rename #general, remove people from private channels they did not make).
export const isAdmin = () => Boolean(state.users.get(state.self.id)?.is_admin);

const listeners = new Map();

export function on(topic, listener) {
  if (!listeners.has(topic)) listeners.set(topic, new Set());
  listeners.get(topic).add(listener);
}

export function emit(topic, detail) {
  for (const listener of listeners.get(topic) || []) listener(detail);
}
