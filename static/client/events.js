// Applies realtime events (and our own sends' answers) to the state, then tells the views.
import { call } from './api.js';
import { threadKey } from './history.js';
import { forget } from './outbox.js';
import { emit, state } from './store.js';

const TYPING_SHOWN_MS = 6000; // clients repeat typing every ~3 s while it lasts

const isReply = (m) => m.thread_ts && m.thread_ts !== m.ts;
// Counted in unread_count but not in unread_count_display, as Slack does (the server's
// messaging.models.JOIN_LEAVE_SUBTYPES).
const JOIN_LEAVE = new Set(['channel_join', 'channel_leave', 'group_join', 'group_leave']);
// In the channel's own timeline: not a thread reply, unless also sent to the channel.
const inChannel = (m) => !isReply(m) || m.subtype === 'thread_broadcast';

export function mentionsMe(message, channel) {
  if (channel?.is_im) return true;
  const text = message.text || '';
  return text.includes(`<@${state.self.id}`) || /<!(here|channel|everyone)[|>]/.test(text);
}

// What the server shows of a deleted thread parent (messaging/shapes.py).
function tombstone(message) {
  const { ts, thread_ts, reply_count, reply_users, reply_users_count, latest_reply } = message;
  return {
    type: 'message', subtype: 'tombstone', hidden: true, user: 'USLACKBOT', text: 'This message was deleted.',
    ts, thread_ts, reply_count, reply_users, reply_users_count, latest_reply,
  };
}

function placeMessage(channelId, message) {
  const thread = isReply(message) ? state.threads.get(threadKey(channelId, message.thread_ts)) : null;
  if (thread) thread.upsert(message);
  if (inChannel(message)) {
    const history = state.histories.get(channelId);
    if (history) history.upsert(message);
    if (message.thread_ts === message.ts) {
      const own = state.threads.get(threadKey(channelId, message.ts));
      if (own) own.upsert(message);
    }
  }
  emit('messages', channelId);
}

// A message we posted (from chat.postMessage's answer) or one the socket brought.
export function messagePosted(channelId, message) {
  if (message.client_msg_id) forget(message.client_msg_id);
  placeMessage(channelId, message);
}

function countUnread(channelId, message) {
  const channel = state.channels.get(channelId);
  if (!channel || message.user === state.self.id || !inChannel(message) || message.hidden) return;
  if (channelId === state.current && document.visibilityState === 'visible') {
    emit('seen', channelId);
    return;
  }
  channel.unread_count = (channel.unread_count || 0) + 1;
  if (!JOIN_LEAVE.has(message.subtype)) channel.unread_count_display = (channel.unread_count_display || 0) + 1;
  if (mentionsMe(message, channel)) channel.mention_count = (channel.mention_count || 0) + 1;
  emit('channels');
}

// Replace a message wherever it is loaded (the channel and its threads) with change(copy):
// a new object, so views re-render it.
function changeMessage(channelId, ts, change) {
  const histories = [state.histories.get(channelId)];
  for (const [key, thread] of state.threads) if (key.startsWith(`${channelId}/`)) histories.push(thread);
  for (const history of histories) {
    const message = history?.get(ts);
    if (message) history.upsert(change({ ...message }));
  }
  emit('messages', channelId);
}

function changeReaction(item, name, user, added) {
  changeMessage(item.channel, item.ts, (message) => {
    const reactions = (message.reactions || []).map((r) => ({ ...r, users: [...r.users] }));
    let reaction = reactions.find((r) => r.name === name);
    if (added) {
      if (!reaction) reactions.push((reaction = { name, users: [], count: 0 }));
      if (!reaction.users.includes(user)) reaction.users.push(user);
    } else if (reaction) {
      reaction.users = reaction.users.filter((u) => u !== user);
    }
    for (const r of reactions) r.count = r.users.length;
    message.reactions = reactions.filter((r) => r.count > 0);
    return message;
  });
}

function changePin(channelId, ts, pinned) {
  changeMessage(channelId, ts, (message) => {
    const pins = (message.pinned_to || []).filter((c) => c !== channelId);
    message.pinned_to = pinned ? [...pins, channelId] : pins;
    return message;
  });
  emit('pins', channelId);
}

async function refreshChannel(channelId) {
  try {
    const { channel } = await call('conversations.info', { channel: channelId });
    const known = state.channels.get(channelId) || {};
    state.channels.set(channelId, { ...known, ...channel });
    emit('channels');
  } catch (error) {
    /* gone or no longer visible: the next boot tells */
  }
}

// The message says the new value (Slack's `topic` / `purpose`); a message without it (from
// a server of before it did) sends us to ask for the channel.
function topicOrPurposeSet(channelId, message) {
  const which = message.subtype === 'channel_topic' ? 'topic' : 'purpose';
  const channel = state.channels.get(channelId);
  if (!channel || typeof message[which] !== 'string') {
    refreshChannel(channelId);
    return;
  }
  channel[which] = { value: message[which], creator: message.user || '', last_set: Math.floor(Number(message.ts)) };
  emit('channels');
}

function onMessage(frame) {
  const channelId = frame.channel;
  switch (frame.subtype) {
    case 'message_changed':
      placeMessage(channelId, frame.message);
      return;
    case 'message_deleted': {
      let wasPinned = false;
      for (const history of [state.histories.get(channelId), ...state.threads.values()]) {
        const deleted = history?.get(frame.deleted_ts);
        wasPinned ||= Boolean(deleted?.pinned_to?.includes(channelId));
        // A parent with replies stays, as the server keeps it, so its thread hangs together.
        if (deleted?.reply_count) history.upsert(tombstone(deleted));
        else history?.remove(frame.deleted_ts);
      }
      emit('messages', channelId);
      if (wasPinned) emit('pins', channelId); // unpinned with it
      return;
    }
    case 'message_replied':
      if (state.histories.get(channelId)?.get(frame.message.ts)) placeMessage(channelId, frame.message);
      return;
    default: {
      const { event_id, channel_type, event_ts, ...message } = frame;
      messagePosted(channelId, message);
      countUnread(channelId, message);
      typingEnded(channelId, message);
      if (message.subtype === 'channel_topic' || message.subtype === 'channel_purpose') {
        topicOrPurposeSet(channelId, message);
      }
    }
  }
}

// We are no longer in it (we left it, here or in another tab, or someone removed us): a
// public channel stays listed, to join again; the others are gone. Views hear 'channels',
// then 'left' ({channel, removed}) to leave a conversation on screen that is gone.
export function leftConversation(channelId) {
  const channel = state.channels.get(channelId);
  const removed = !channel || channel.is_private;
  if (removed) state.channels.delete(channelId);
  else channel.is_member = false;
  state.histories.delete(channelId);
  emit('channels');
  emit('left', { channel: channelId, removed });
}

function upsertChannel(shape, extra = {}) {
  const known = state.channels.get(shape.id) || {};
  state.channels.set(shape.id, { ...known, ...shape, ...extra });
  emit('channels');
}

function markRead(channelId, ts) {
  const channel = state.channels.get(channelId);
  if (!channel) return;
  channel.last_read = ts;
  const history = state.histories.get(channelId);
  const unread = history
    ? history.messages.filter((m) => m.ts > ts && m.user !== state.self.id && inChannel(m) && !m.hidden)
    : [];
  channel.unread_count = unread.length;
  channel.unread_count_display = unread.filter((m) => !JOIN_LEAVE.has(m.subtype)).length;
  channel.mention_count = unread.filter((m) => mentionsMe(m, channel)).length;
  emit('channels');
}

// Where typing shows (a key of state.typing): a thread's own line, or the conversation's.
const typingPlace = (channelId, threadTs) => (threadTs ? threadKey(channelId, threadTs) : channelId);

// Their message arrived: they are not typing it any more. A reply (also one sent to the
// channel) was typed in its thread's box, so that is the line it ends.
function typingEnded(channelId, message) {
  const place = typingPlace(channelId, isReply(message) ? message.thread_ts : null);
  if (state.typing.get(place)?.delete(message.user)) emit('typing', place);
}

function typing(channelId, threadTs, user) {
  const place = typingPlace(channelId, threadTs);
  if (!state.typing.has(place)) state.typing.set(place, new Map());
  state.typing.get(place).set(user, Date.now() + TYPING_SHOWN_MS);
  emit('typing', place);
  setTimeout(() => emit('typing', place), TYPING_SHOWN_MS + 50);
}

export function applyFrame(frame) {
  const type = frame.type;
  if (type === 'message') return onMessage(frame);
  if (type === 'reaction_added' || type === 'reaction_removed') {
    return changeReaction(frame.item, frame.reaction, frame.user, type === 'reaction_added');
  }
  if (type === 'pin_added' || type === 'pin_removed') {
    return changePin(frame.item.channel, frame.item.message.ts, type === 'pin_added');
  }
  if (type === 'user_typing') return typing(frame.channel, frame.thread_ts, frame.user);
  if (type === 'presence_change') {
    for (const user of frame.users || [frame.user]) state.presence.set(user, frame.presence);
    return emit('presence');
  }
  if (type === 'channel_created') {
    return upsertChannel(frame.channel, { is_member: frame.channel.creator === state.self.id });
  }
  if (type === 'im_created' || type === 'mpim_open') {
    // The event's shape is the same for both people, so its `user` (a DM's other person)
    // may be the viewer: ask for this viewer's shape instead.
    const known = state.channels.get(frame.channel.id);
    if (known) return undefined;
    return refreshChannel(frame.channel.id).then(() => {
      const channel = state.channels.get(frame.channel.id);
      if (channel) channel.is_member = true;
      emit('channels');
    });
  }
  if (type === 'channel_joined' || type === 'group_joined') {
    return upsertChannel(frame.channel, { is_member: true });
  }
  if (type === 'channel_left' || type === 'group_left') return leftConversation(frame.channel);
  if (type === 'member_joined_channel' || type === 'member_left_channel') {
    return emit('members', frame.channel);
  }
  if (/^(channel|group)_(archive|unarchive)$/.test(type)) {
    const channel = state.channels.get(frame.channel);
    if (channel) channel.is_archived = type.endsWith('_archive');
    return emit('channels');
  }
  if (type === 'channel_rename' || type === 'group_rename') {
    const channel = state.channels.get(frame.channel.id);
    if (channel) channel.name = frame.channel.name;
    return emit('channels');
  }
  if (/^(channel|group|im|mpim)_marked$/.test(type)) return markRead(frame.channel, frame.ts);
  if (type === 'team_join' || type === 'user_change') {
    state.users.set(frame.user.id, frame.user);
    return emit('users');
  }
  if (type === 'emoji_changed') {
    return call('emoji.list').then((answer) => {
      state.emoji = answer.emoji;
      emit('messages', state.current);
    });
  }
  return undefined;
}

