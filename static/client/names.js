// How people and conversations are called on screen.
import { state } from './store.js';

export function userName(userId) {
  const user = state.users.get(userId);
  if (!user) return userId || 'unknown';
  const profile = user.profile || {};
  return profile.display_name || user.real_name || profile.real_name || user.name || userId;
}

export function authorName(message) {
  if (message.username) return message.username;
  if (message.user && state.users.has(message.user)) return userName(message.user);
  if (message.bot_id && state.bots.has(message.bot_id)) return state.bots.get(message.bot_id).name;
  return message.user || message.bot_id || 'unknown';
}

// A search match names a person's message by their handle (`username`, as Slack's search
// does); on screen it is the name their messages show everywhere else. A message's own
// username is kept, and so is the handle of someone this client does not know.
export function matchAuthorName(match) {
  const user = match.user ? state.users.get(match.user) : null;
  if (user && match.username === user.name) return userName(match.user);
  return authorName(match);
}

export function channelName(channel) {
  if (!channel) return '';
  if (channel.is_im) return userName(channel.user);
  if (channel.is_mpim) {
    const ids = (channel.name || '').replace(/^mpdm-/, '').replace(/-1$/, '').split('--');
    return ids.filter((id) => id !== state.self.id).map(userName).join(', ');
  }
  return channel.name || channel.id;
}

export function channelLabel(channel) {
  if (!channel) return '';
  return channel.is_im || channel.is_mpim ? channelName(channel) : `#${channelName(channel)}`;
}

export function userColor(userId) {
  const color = state.users.get(userId)?.color || '9f69e7';
  return /^[0-9a-f]{6}$/i.test(color) ? `#${color}` : '#9f69e7';
}
