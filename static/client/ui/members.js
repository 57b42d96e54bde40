// The member list of a conversation, with presence dots.
import { call } from '../api.js';
import { userName } from '../names.js';
import { state } from '../store.js';
import { openPanel } from './panel.js';

const MEMBER_PAGE = 500;

function presenceDot(userId) {
  const dot = document.createElement('span');
  const presence = state.presence.get(userId) || 'away';
  dot.className = `presence ${presence}`;
  dot.dataset.user = userId;
  dot.title = presence;
  return dot;
}

export function refreshPresenceDots(root = document) {
  for (const dot of root.querySelectorAll('.presence[data-user]')) {
    const presence = state.presence.get(dot.dataset.user) || 'away';
    dot.className = `presence ${presence}`;
    dot.title = presence;
  }
}

// Resolves with the member ids shown (so the caller can subscribe to their presence).
export async function showMembers(channelId) {
  const body = openPanel('members', 'Members');
  body.dataset.channel = channelId;
  const { members } = await call('conversations.members', { channel: channelId, limit: MEMBER_PAGE });
  const list = document.createElement('ul');
  list.className = 'member-list';
  for (const id of members.sort((a, b) => userName(a).localeCompare(userName(b)))) {
    const li = document.createElement('li');
    li.dataset.user = id;
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = userName(id);
    li.append(presenceDot(id), name);
    list.append(li);
  }
  body.replaceChildren(list);
  return members;
}
