// Managing conversations: create, browse and join, open a DM, leave, archive, rename, set the
// topic and the purpose (Slack's description).
import { call } from '../api.js';
import { leftConversation } from '../events.js';
import { channelName, userName } from '../names.js';
import { emit, isAdmin, state } from '../store.js';
import { askForm, confirmAction, showList } from './dialogs.js';

// Every conversation is opened through the hash (main.js's hashchange listener). Setting
// the hash to what it already is does not navigate, so two reasons to go to the same place
// in one turn (leaving a channel, and the 'left' listener seeing it gone) open it once.
const go = (channelId) => {
  window.location.hash = `#/${channelId}`;
};

export function goToGeneral() {
  const general = [...state.channels.values()].find((c) => c.is_general);
  go(general ? general.id : '');
}

function remember(channel, extra = {}) {
  state.channels.set(channel.id, { ...(state.channels.get(channel.id) || {}), ...channel, ...extra });
  emit('channels');
}

// What a channel is called from what was typed, as Slack's dialogs do as you type.
const slugOf = (name) => name.trim().toLowerCase().replace(/\s+/g, '-');

export function createChannel() {
  const fields = [
    { name: 'name', label: 'Name' },
    { name: 'is_private', label: 'Private', type: 'checkbox' },
  ];
  return askForm('Create a channel', fields, 'Create', {
    onSubmit: async ({ name, is_private }) => {
      try {
        const { channel } = await call('conversations.create', { name: slugOf(name), is_private });
        remember(channel, { is_member: true, unread_count: 0, unread_count_display: 0, mention_count: 0 });
        go(channel.id);
        return null;
      } catch (error) {
        return error;
      }
    },
  });
}

// Archived channels are listed after the others, to be read (not joined): every public one,
// and the private ones the viewer is in (the only ones the client knows of).
function browseItem(channel) {
  const about = channel.topic?.value || channel.purpose?.value || '';
  return {
    id: channel.id,
    label: `${channel.is_private ? '🔒' : '#'}${channel.name}`,
    detail: about,
    action: channel.is_archived ? 'View' : channel.is_member ? 'Open' : 'Join',
    section: channel.is_archived ? 'Archived' : '',
  };
}

export function browseChannels() {
  const channels = [...state.channels.values()].filter(
    (c) => !c.is_im && !c.is_mpim && (c.is_archived || !c.is_private),
  );
  const items = channels
    .sort((a, b) => Number(a.is_archived || 0) - Number(b.is_archived || 0) || a.name.localeCompare(b.name))
    .map(browseItem);
  showList('Browse channels', items, {
    filterLabel: 'Find a channel',
    onPick: async ([id], close) => {
      const channel = state.channels.get(id);
      if (!channel.is_member && !channel.is_archived) {
        const answer = await call('conversations.join', { channel: id });
        remember(answer.channel, { is_member: true });
      }
      close();
      go(id);
    },
  });
}

export function openDirectMessage() {
  const items = [...state.users.values()]
    .filter((u) => u.id !== state.self.id && !u.deleted && !u.is_bot)
    .sort((a, b) => userName(a.id).localeCompare(userName(b.id)))
    .map((u) => ({ id: u.id, label: userName(u.id), detail: `@${u.name}` }));
  showList('Direct message', items, {
    filterLabel: 'Find people',
    multi: true,
    pickLabel: 'Open',
    onPick: async (users, close) => {
      const { channel } = await call('conversations.open', { users: users.join(','), return_im: true });
      remember(channel, { is_member: true });
      close();
      go(channel.id);
    },
  });
}

export async function joinChannel(channelId) {
  const { channel } = await call('conversations.join', { channel: channelId });
  remember(channel, { is_member: true });
}

export async function leaveChannel(channelId) {
  const channel = state.channels.get(channelId);
  if (!(await confirmAction(`Leave #${channelName(channel)}?`, 'You can join a public channel again later.', 'Leave'))) {
    return;
  }
  await call('conversations.leave', { channel: channelId });
  leftConversation(channelId);
  goToGeneral(); // a public channel stays listed: leave it for #general all the same
}

export async function archiveChannel(channelId) {
  const channel = state.channels.get(channelId);
  if (!(await confirmAction(`Archive #${channelName(channel)}?`, 'Nobody can post in it until it is unarchived.', 'Archive'))) {
    return;
  }
  await call('conversations.archive', { channel: channelId });
  channel.is_archived = true;
  emit('channels');
}

// Who the server lets unarchive (messaging.actions.channels.set_archived): its members, and
// admins.
export function mayUnarchive(channel) {
  return channel.is_member !== false || isAdmin();
}

export async function unarchiveChannel(channelId) {
  await call('conversations.unarchive', { channel: channelId });
  state.channels.get(channelId).is_archived = false;
  emit('channels');
}

// Who the server lets rename a channel (messaging.actions.channels.rename): its members, but
// only admins #general (everyone's channel). Not a DM or group DM, nor while it is archived.
export function mayRename(channel) {
  if (!channel || channel.is_im || channel.is_mpim || channel.is_archived) return false;
  return channel.is_member !== false && (!channel.is_general || isAdmin());
}

export function renameChannel(channelId) {
  const channel = state.channels.get(channelId);
  const fields = [{ name: 'name', label: 'Name', value: channel.name || '' }];
  return askForm(`Rename #${channelName(channel)}`, fields, 'Save', {
    onSubmit: async ({ name }) => {
      try {
        remember((await call('conversations.rename', { channel: channelId, name: slugOf(name) })).channel);
        return null;
      } catch (error) {
        return error;
      }
    },
  });
}

// Who the server lets set the topic or the purpose (set_topic_or_purpose): its members, while
// it is not archived.
export function mayDescribe(channel) {
  return Boolean(channel) && channel.is_member !== false && !channel.is_archived;
}

// The topic (in the header) or the purpose (the description in the channel's details).
const TEXTS = {
  topic: { title: 'Channel topic', label: 'Topic', method: 'conversations.setTopic' },
  purpose: { title: 'Channel description', label: 'Description', method: 'conversations.setPurpose' },
};

function editText(channelId, which) {
  const channel = state.channels.get(channelId);
  const { title, label, method } = TEXTS[which];
  const fields = [{ name: which, label, value: channel[which]?.value || '' }];
  return askForm(title, fields, 'Save', {
    onSubmit: async (values) => {
      try {
        remember((await call(method, { channel: channelId, [which]: values[which] })).channel);
        return null;
      } catch (error) {
        return error;
      }
    },
  });
}

export const editTopic = (channelId) => editText(channelId, 'topic');
export const editPurpose = (channelId) => editText(channelId, 'purpose');
