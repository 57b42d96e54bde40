// The conversation list: channels, private channels, DMs and group DMs the member is in,
// with unread counts, mention badges and presence dots.
import { channelName } from '../names.js';
import { state } from '../store.js';
import { el } from '../dom.js';

// What Slack shows: unread_count_display leaves out joins and leaves, which alone do not
// make a conversation unread (unread_count counts them).
const shownUnread = (channel) => channel.unread_count_display || 0;

function item(channel) {
  const li = el('li');
  const a = el('a', 'conv');
  a.href = `#/${channel.id}`;
  a.dataset.id = channel.id;
  if (channel.id === state.current) a.classList.add('current');
  if (shownUnread(channel) > 0) a.classList.add('unread');
  if (channel.is_archived) a.classList.add('archived');
  if (channel.is_im) {
    const dot = el('span', `presence ${state.presence.get(channel.user) || 'away'}`);
    dot.dataset.user = channel.user;
    dot.title = state.presence.get(channel.user) || 'away';
    a.append(dot);
  } else if (!channel.is_mpim) {
    a.append(el('span', 'sigil', channel.is_private ? '🔒' : '#'));
  }
  a.append(el('span', 'name', channelName(channel)));
  if (channel.mention_count > 0) {
    a.append(el('span', 'badge mention', String(channel.mention_count)));
  } else if (shownUnread(channel) > 0) {
    a.append(el('span', 'badge', String(shownUnread(channel))));
  }
  li.append(a);
  return li;
}

const byName = (a, b) => channelName(a).localeCompare(channelName(b));

// Items are rebuilt only when what they show changed, and a list is touched only when its
// items did: a channel switch then costs two class changes, not a new sidebar.
const built = new Map(); // conversation id -> { signature, li }

function itemFor(channel) {
  const signature = [
    channelName(channel),
    channel.id === state.current,
    shownUnread(channel),
    channel.mention_count || 0,
    channel.is_archived,
    channel.is_private,
    channel.is_im ? state.presence.get(channel.user) || 'away' : '',
  ].join('|');
  const known = built.get(channel.id);
  if (known && known.signature === signature) return known.li;
  const li = item(channel);
  built.set(channel.id, { signature, li });
  return li;
}

function fill(list, items) {
  const current = list.children;
  if (current.length === items.length && items.every((li, i) => current[i] === li)) return;
  list.replaceChildren(...items);
}

export function renderSidebar(lists) {
  const mine = [...state.channels.values()].filter((c) => c.is_member !== false);
  const sections = {
    channels: mine.filter((c) => !c.is_private && !c.is_archived),
    groups: mine.filter((c) => c.is_private && !c.is_im && !c.is_mpim && !c.is_archived),
    dms: mine.filter((c) => c.is_im || c.is_mpim),
  };
  for (const [key, channels] of Object.entries(sections)) fill(lists[key], channels.sort(byName).map(itemFor));
}

export function totalUnread() {
  let count = 0;
  for (const channel of state.channels.values()) if (channel.is_member !== false) count += shownUnread(channel);
  return count;
}
