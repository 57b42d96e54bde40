// The web client: boots with rtm.start, keeps a socket, and wires the views to the state.
import { boot, socketUrl } from './boot.js';
import { applyFrame, messagePosted } from './events.js';
import { threadKey } from './history.js';
import { enqueue, flush, openOutbox, pending } from './outbox.js';
import { Connection } from './socket.js';
import { on, state } from './store.js';
import { messageActions } from './ui/actions.js';
import { showConnection, showError } from './ui/banner.js';
import * as conversations from './ui/conversations.js';
import { refreshDetails, showDetails } from './ui/details.js';
import { refreshPresenceDots, showMembers } from './ui/members.js';
import { closePanel, panelKind, renderPanelReadOnly } from './ui/panel.js';
import { Pane } from './ui/pane.js';
import { showPins } from './ui/pins.js';
import { showSearch } from './ui/search.js';
import { renderSidebar, totalUnread } from './ui/sidebar.js';
import { ThreadView } from './ui/thread.js';

const TYPING_EVERY_MS = 3000;
const BOOT_RETRY_MAX_MS = 30000;

const $ = (id) => document.getElementById(id);
const root = $('client');
const lists = { channels: $('list-channels'), groups: $('list-groups'), dms: $('list-dms') };
let connection = null;
let panelMembers = [];
let lastTyping = { place: null, at: 0 };

// Typing in a thread's box names the thread: others show it there, not in the channel. A
// move to another box is told at once, as the other place's line is a different one.
function typing(channelId, threadTs = null) {
  const now = Date.now();
  const place = threadTs ? threadKey(channelId, threadTs) : channelId;
  if (!channelId || (place === lastTyping.place && now - lastTyping.at < TYPING_EVERY_MS)) return;
  lastTyping = { place, at: now };
  connection.send({ type: 'typing', channel: channelId, ...(threadTs && { thread_ts: threadTs }) });
}

// Others stop showing us typing when our message arrives: the next keystroke says so again.
function sendMessage(entry) {
  lastTyping = { place: null, at: 0 };
  enqueue(entry);
}

function send({ text, thread_ts = null, reply_broadcast = false }) {
  sendMessage({ channel: state.current, text, thread_ts, reply_broadcast });
}

// Presence is pushed only for whom we subscribe: DM partners and the member list shown.
// Sent again when that set changes (a new DM) and on every new socket (`fresh`), whose
// subscriptions start empty.
let presenceSubscribed = '';
function subscribePresence(fresh = false) {
  if (!connection) return; // still booting: hello subscribes
  const wanted = new Set(panelMembers);
  for (const channel of state.channels.values()) if (channel.is_im && channel.user) wanted.add(channel.user);
  const ids = [...wanted].sort();
  if (!fresh && ids.join() === presenceSubscribed) return;
  if (connection.send({ type: 'presence_sub', ids })) presenceSubscribed = ids.join();
}

const actionsFor = messageActions((channelId, ts) => thread.open(channelId, ts));
const thread = new ThreadView({
  send: (entry) => sendMessage({ ...entry, channel: thread.channelId }),
  onAction: actionsFor(() => thread.channelId),
  onTyping: () => typing(thread.channelId, thread.threadTs),
});
const pane = new Pane({ send, onAction: actionsFor(() => state.current), onTyping: () => typing(state.current) });

function openFromHash() {
  const wanted = decodeURIComponent(window.location.hash.replace(/^#\/?/, ''));
  const channels = [...state.channels.values()];
  // Someone in no conversation yet (e.g. the owner of an imported team) lands on #general
  // with a Join button.
  const target =
    state.channels.get(wanted) ||
    channels.find((c) => c.is_general && c.is_member !== false) ||
    channels.find((c) => c.is_member !== false) ||
    channels.find((c) => c.is_general) ||
    channels.find((c) => !c.is_private);
  if (!target) return;
  if (target.id === state.current && state.histories.get(target.id)?.loaded) return;
  if (panelKind() !== 'search') closePanel();
  panelMembers = [];
  return pane.open(target.id);
}

function renderEverything() {
  renderSidebar(lists);
  pane.renderHeader();
  pane.render();
}

// Signed out (in another tab, or the session ended): the sign-in page, not a retry loop.
function signInAgainIfSignedOut(error) {
  if (error.code === 'not_authed') window.location.assign('/signin/');
}

async function reconnectUrl() {
  try {
    return await socketUrl();
  } catch (error) {
    signInAgainIfSignedOut(error);
    throw error;
  }
}

async function bootWithRetry() {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await boot();
    } catch (error) {
      if (error.code === 'not_authed') {
        signInAgainIfSignedOut(error);
        throw error;
      }
      showConnection('reconnecting');
      const ceiling = Math.min(BOOT_RETRY_MAX_MS, 1000 * 2 ** attempt);
      await new Promise((resolve) => setTimeout(resolve, ceiling / 2 + Math.random() * (ceiling / 2)));
    }
  }
}

async function resync() {
  // The outbox lives in localStorage and is untouched: it is sent again after the boot.
  const current = state.current;
  const { url, cursor } = await bootWithRetry();
  state.current = null;
  pane.reset();
  renderEverything();
  if (current && state.channels.has(current)) await pane.open(current);
  else openFromHash();
  connection.start(url, cursor);
}

function wire() {
  on('channels', () => {
    subscribePresence();
    renderSidebar(lists);
    pane.renderHeader();
    thread.renderReadOnly();
    renderPanelReadOnly();
    refreshDetails();
    const unread = totalUnread();
    const name = document.title.replace(/^\(\d+\) /, '');
    document.title = unread ? `(${unread}) ${name}` : name;
  });
  // Removed from the private conversation on screen (by someone else, or we left it here or
  // in another tab): leave it for #general rather than keep showing it with a composer that
  // can only fail. Checked where membership changes, not on every 'channels' (which fires for
  // each open, mark and unread count): there it also opened #general directly while our own
  // leave was already on its way there through the hash, so #general opened twice.
  on('left', ({ channel, removed }) => {
    if (removed && channel === state.current) conversations.goToGeneral();
  });
  on('messages', (channelId) => {
    if (channelId === state.current) pane.render();
    else pane.stale(channelId);
    if (thread.isOpen(channelId)) thread.render();
  });
  on('outbox', () => {
    pane.render();
    if (thread.isOpen()) thread.render();
  });
  on('sent', ({ channel, message }) => messagePosted(channel, message));
  on('typing', (place) => {
    if (place === state.current) pane.renderTyping();
    if (place === thread.place()) thread.renderTyping();
  });
  on('presence', () => refreshPresenceDots());
  on('pins', (channelId) => {
    if (panelKind() === 'pins' && channelId === state.current) showPins(channelId, actionsFor(() => channelId));
  });
  on('seen', () => pane.markSoon());
  on('users', () => {
    renderEverything();
    refreshDetails(); // an admin now, or no longer: what they may change
  });
  on('members', async (channelId) => {
    if (panelKind() !== 'members' || channelId !== state.current) return;
    const shown = await showMembers(channelId, { refresh: true });
    if (shown) {
      panelMembers = shown;
      subscribePresence();
    }
  });
  window.addEventListener('hashchange', openFromHash);
  document.addEventListener('visibilitychange', () => pane.markSoon());
  window.addEventListener('online', () => flush());
  $('panel-close').addEventListener('click', () => {
    closePanel();
    panelMembers = [];
  });
  // Buttons whose work may fail say so in the banner.
  const button = (id, work) =>
    $(id).addEventListener('click', () => Promise.resolve().then(work).catch(showError));
  button('new-channel', () => conversations.createChannel());
  button('browse-channels', () => conversations.browseChannels());
  button('new-dm', () => conversations.openDirectMessage());
  button('btn-topic', () => conversations.editTopic(state.current));
  button('btn-details', () => showDetails(state.current));
  button('btn-leave', () => conversations.leaveChannel(state.current));
  button('btn-archive', () => conversations.archiveChannel(state.current));
  button('btn-unarchive', () => conversations.unarchiveChannel(state.current));
  button('btn-join', () => conversations.joinChannel(state.current));
  button('btn-pins', () => {
    const channelId = state.current;
    return showPins(channelId, actionsFor(() => channelId));
  });
  button('btn-members', async () => {
    const shown = await showMembers(state.current);
    if (shown) {
      panelMembers = shown;
      subscribePresence();
    }
  });
  $('search-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const query = $('search-input').value.trim();
    if (query) showSearch(query, (channelId, ts) => pane.jumpTo(channelId, ts));
  });
}

async function start() {
  openOutbox(root.dataset.teamId, root.dataset.memberId);
  wire();
  showConnection('booting');
  const { url, cursor } = await bootWithRetry();
  renderEverything();
  const opened = openFromHash();
  connection = new Connection({
    connectUrl: reconnectUrl,
    onFrame: (frame) => {
      if (frame.type === 'hello') {
        subscribePresence(true);
        flush(); // whatever waited in the outbox goes out now (again: idempotent)
      }
      applyFrame(frame);
    },
    onState: showConnection,
    onResync: resync,
  });
  connection.start(url, cursor);
  if (pending().length) flush();
  await opened;
  // The sidebar and the open conversation's messages are on screen (bench/client_speed.py).
  performance.mark('chat-first-paint');
}

start();
