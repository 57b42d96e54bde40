// The member list of a conversation, with presence dots; in a channel, adding people to it
// and removing them, for whom the server lets.
import { call } from '../api.js';
import { channelLabel, userName } from '../names.js';
import { emit, isAdmin, state } from '../store.js';
import { showError } from './banner.js';
import { confirmAction, showList } from './dialogs.js';
import { openPanel, panelChannel, panelKind } from './panel.js';
import { el } from '../dom.js';

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

const isChannel = (channel) => Boolean(channel) && !channel.is_im && !channel.is_mpim;

// Who the server lets add people (messaging.actions.channels.invite): a member of a channel,
// private ones too. Archived, the panel hides it (client.css's .read-only), as it may be
// archived while shown.
function mayAdd(channel) {
  return isChannel(channel) && channel.is_member !== false;
}

// Who the server lets remove someone (messaging.actions.channels.kick): a member, from any
// channel but #general, anyone but themselves; from a private channel, only its creator or
// an admin.
function mayRemove(channel, userId) {
  if (!mayAdd(channel) || channel.is_general || userId === state.self.id) return false;
  return !channel.is_private || channel.creator === state.self.id || isAdmin();
}

// Everyone in it, page after page (to offer only those not in it yet).
async function allMembers(channelId) {
  const everyone = [];
  let cursor = '';
  do {
    const page = await call('conversations.members', { channel: channelId, limit: MEMBER_PAGE, cursor });
    everyone.push(...page.members);
    cursor = page.response_metadata?.next_cursor || '';
  } while (cursor);
  return everyone;
}

export async function addPeople(channelId) {
  const channel = state.channels.get(channelId);
  const present = new Set(await allMembers(channelId));
  const items = [...state.users.values()]
    .filter((u) => !present.has(u.id) && !u.deleted && !u.is_bot)
    .sort((a, b) => userName(a.id).localeCompare(userName(b.id)))
    .map((u) => ({ id: u.id, label: userName(u.id), detail: `@${u.name}` }));
  showList(`Add people to ${channelLabel(channel)}`, items, {
    filterLabel: 'Find people',
    multi: true,
    pickLabel: 'Add',
    onPick: async (users, close) => {
      await call('conversations.invite', { channel: channelId, users: users.join(',') });
      close();
      emit('members', channelId); // their member_joined_channel events follow
    },
  });
}

export function removeFromChannel(channelId, userId) {
  const channel = state.channels.get(channelId);
  const who = userName(userId);
  return confirmAction(
    `Remove ${who} from ${channelLabel(channel)}?`,
    channel.is_private
      ? `${who} will no longer see this channel, unless someone adds them back.`
      : `${who} can join this channel again later.`,
    'Remove',
    {
      onSubmit: async () => {
        try {
          await call('conversations.kick', { channel: channelId, user: userId });
          emit('members', channelId);
          return null;
        } catch (error) {
          // They left, or someone else removed them, since the list was drawn: what was
          // asked is done (kick's not_in_channel names them, not the one asking).
          if (error.code !== 'not_in_channel') return error;
          emit('members', channelId);
          return null;
        }
      },
    },
  );
}

function memberRow(channel, userId) {
  const li = el('li');
  li.dataset.user = userId;
  const name = el('span', 'name', userName(userId));
  li.append(presenceDot(userId), name);
  if (userId === state.self.id) name.append(el('span', 'muted', ' (you)'));
  if (mayRemove(channel, userId)) {
    const remove = el('button', 'secondary write member-remove', 'Remove');
    remove.type = 'button';
    remove.setAttribute('aria-label', `Remove ${userName(userId)} from ${channelLabel(channel)}`);
    li.append(remove);
  }
  return li;
}

// The last list asked for. A kick or an invite asks twice (right after it, and on the
// member_left/joined_channel event that follows) and the answers may come back in either
// order: only the last one asked for is drawn, so an older list never replaces a newer one.
let lastAsked = 0;

// Resolves with the member ids shown (so the caller can subscribe to their presence), or
// null when it was not shown: the conversation is no longer on screen, (`refresh`, for
// people coming and going) the panel no longer shows its members, or a later list was asked
// for. Drawn anew, it puts the focus back where it was (or on the next person's Remove, when
// the one focused was removed).
export async function showMembers(channelId, { refresh = false } = {}) {
  const asked = ++lastAsked;
  const { members } = await call('conversations.members', { channel: channelId, limit: MEMBER_PAGE });
  if (asked !== lastAsked) return null;
  const shownHere = panelKind() === 'members' && panelChannel() === channelId;
  if (state.current !== channelId || (refresh && !shownHere)) return null;
  const channel = state.channels.get(channelId);
  const side = document.getElementById('side-panel');
  const before = shownHere && side.contains(document.activeElement) ? document.activeElement : null;
  const focusedUser = before?.closest('li[data-user]')?.dataset.user;
  const focusedAdd = Boolean(before?.classList.contains('member-add'));
  const shownBefore = [...side.querySelectorAll('.member-list li[data-user]')].map((li) => li.dataset.user);

  const body = openPanel('members', 'Members', channelId);
  if (mayAdd(channel)) {
    const add = el('button', 'write member-add', 'Add people');
    add.type = 'button';
    add.addEventListener('click', () => addPeople(channelId).catch(showError));
    body.append(add);
  }
  const list = el('ul', 'member-list');
  list.addEventListener('click', (event) => {
    const row = event.target.closest('.member-remove') && event.target.closest('li[data-user]');
    if (row) removeFromChannel(channelId, row.dataset.user).catch(showError);
  });
  const sorted = members.sort((a, b) => userName(a).localeCompare(userName(b)));
  list.append(...sorted.map((id) => memberRow(channel, id)));
  body.append(list);

  if (focusedAdd) body.querySelector('.member-add')?.focus();
  else if (focusedUser) {
    // The same person, or whoever now stands where they stood.
    const next = [focusedUser, ...shownBefore.slice(shownBefore.indexOf(focusedUser) + 1)].find((id) =>
      members.includes(id),
    );
    const row = next && list.querySelector(`li[data-user="${CSS.escape(next)}"]`);
    (row?.querySelector('button') || body.querySelector('.member-add'))?.focus();
  }
  return members;
}
