// The open conversation: its header (name, topic, buttons), messages with scroll-back,
// the typing line and the composer; it marks the conversation read as it is seen.
import { call } from '../api.js';
import { historyOf, loadOlder } from '../history.js';
import { channelLabel } from '../names.js';
import { pending } from '../outbox.js';
import { renderMrkdwn } from '../render/mrkdwn.js';
import { emit, state } from '../store.js';
import { Composer } from './composer.js';
import { mayUnarchive } from './conversations.js';
import { Timeline } from './timeline.js';
import { typingLine } from './typing.js';

const MARK_DELAY_MS = 300;
const KEPT_TIMELINES = 24; // recently seen conversations keep their rendered lists
const MAX_JUMP_PAGES = 40; // a search hit further back than this opens without scrolling to it

const $ = (id) => document.getElementById(id);

export class Pane {
  // send({text}); onAction(action, message, pendingEntry, button); onTyping()
  constructor({ send, onAction, onTyping }) {
    this.onAction = onAction;
    this.timelines = new Map(); // conversation id -> Timeline, least recently seen first
    this.composer = new Composer($('composer'), { onSend: (text) => send({ text }), onTyping });
    this.markTimer = null;
  }

  channel() {
    return state.channels.get(state.current);
  }

  get timeline() {
    return this.timelineFor(state.current);
  }

  // Each conversation seen lately keeps its own list (and scroll position): switching back
  // shows it again instead of building it anew.
  timelineFor(channelId) {
    let timeline = this.timelines.get(channelId);
    if (timeline) {
      this.timelines.delete(channelId);
      this.timelines.set(channelId, timeline);
      return timeline;
    }
    const box = document.createElement('div');
    box.className = 'timeline';
    box.setAttribute('role', 'log');
    box.hidden = true;
    box.addEventListener('scroll', () => this.markSoon(), { passive: true });
    $('timelines').append(box);
    timeline = new Timeline(box, { onAction: this.onAction, onNeedOlder: () => this.older() });
    timeline.stale = true;
    this.timelines.set(channelId, timeline);
    for (const [id, old] of this.timelines) {
      if (this.timelines.size <= KEPT_TIMELINES) break;
      old.container.remove();
      this.timelines.delete(id);
    }
    return timeline;
  }

  // A conversation not on screen changed: its list is redrawn when it is shown again.
  stale(channelId) {
    const timeline = this.timelines.get(channelId);
    if (timeline) timeline.stale = true;
  }

  reset() {
    for (const timeline of this.timelines.values()) timeline.container.remove();
    this.timelines.clear();
  }

  show(channelId) {
    const shown = this.timelineFor(channelId);
    for (const timeline of this.timelines.values()) {
      const box = timeline.container;
      if (timeline !== shown && !box.hidden) {
        // A hidden element forgets its scroll offset: remember where it was.
        timeline.savedBottom = timeline.atBottom();
        timeline.savedTop = box.scrollTop;
      }
      box.hidden = timeline !== shown;
      // Only the conversation on screen is #messages (tests and styles look it up).
      if (box.hidden) box.removeAttribute('id');
      else box.id = 'messages';
    }
    return shown;
  }

  restoreScroll(timeline) {
    const box = timeline.container;
    box.scrollTop = timeline.savedBottom === false ? timeline.savedTop : box.scrollHeight;
  }

  async open(channelId) {
    state.current = channelId;
    // For whoever follows what is on screen (the browser tests count these).
    $('client').dispatchEvent(new CustomEvent('conversation-opened', { detail: channelId }));
    this.composer.showDraftOf(channelId);
    emit('channels'); // the sidebar and this header follow
    const history = historyOf(channelId);
    const timeline = this.show(channelId);
    if (timeline.stale || timeline.history !== history) {
      this.render({ bottom: timeline.history !== history || timeline.savedBottom !== false });
    }
    this.restoreScroll(timeline);
    if (!history.loaded) {
      await loadOlder(channelId);
      if (state.current !== channelId) return;
      this.render({ bottom: true });
    }
    this.fillViewport(channelId);
    this.markSoon();
  }

  // Load pages until the list can scroll (so scroll-back has something to grab).
  async fillViewport(channelId) {
    const box = this.timeline.container;
    const history = historyOf(channelId);
    while (state.current === channelId && history.hasMore && box.scrollHeight <= box.clientHeight) {
      await this.older();
    }
  }

  async older() {
    const channelId = state.current;
    const history = historyOf(channelId);
    if (!history.hasMore || history.loading) return;
    const added = await loadOlder(channelId);
    if (state.current === channelId && added) this.render({ prepended: true });
  }

  render(options = {}) {
    const channelId = state.current;
    if (!channelId) return;
    const history = historyOf(channelId);
    const mine = pending().filter((e) => e.channel === channelId && !e.thread_ts);
    const timeline = this.timeline;
    timeline.render(history.messages, mine, { hasMore: history.hasMore, ...options });
    timeline.stale = false;
    timeline.history = history;
  }

  renderHeader() {
    const channel = this.channel();
    if (!channel) return;
    document.title = `${channelLabel(channel)} · ${state.team.name}`;
    $('channel-title').textContent = channelLabel(channel);
    const topic = $('channel-topic');
    topic.replaceChildren(renderMrkdwn(channel.topic?.value || ''));
    const isChannel = !channel.is_im && !channel.is_mpim;
    const archived = Boolean(channel.is_archived);
    // Archived, it is read-only as in Slack: its history stays, a banner takes the composer's
    // place, and unarchiving is the only thing left to do (and the banner's to offer).
    $('pane').classList.toggle('read-only', archived);
    $('btn-topic').hidden = !isChannel || archived;
    $('btn-details').hidden = !isChannel; // an archived one's can be read
    $('btn-leave').hidden = !isChannel || archived || channel.is_general;
    $('btn-archive').hidden = !isChannel || archived || channel.is_general;
    $('btn-join').hidden = channel.is_member !== false || archived; // an archived one cannot be joined
    $('composer').hidden = channel.is_member === false || archived;
    this.composer.setPlaceholder(`Message ${channelLabel(channel)}`);
    $('archived-note').hidden = !archived;
    $('btn-unarchive').hidden = !archived || !mayUnarchive(channel);
  }

  renderTyping() {
    $('typing').textContent = typingLine(state.current);
  }

  // conversations.mark up to the newest message, once it has been on screen a moment.
  markSoon() {
    clearTimeout(this.markTimer);
    this.markTimer = setTimeout(() => this.mark(), MARK_DELAY_MS);
  }

  async mark() {
    const channel = this.channel();
    const history = historyOf(state.current);
    const newest = history.messages[history.messages.length - 1];
    if (!channel || !newest || document.visibilityState !== 'visible') return;
    if (channel.is_member === false || (channel.last_read && channel.last_read >= newest.ts)) return;
    channel.last_read = newest.ts;
    channel.unread_count = 0;
    channel.unread_count_display = 0;
    channel.mention_count = 0;
    emit('channels');
    try {
      await call('conversations.mark', { channel: channel.id, ts: newest.ts });
    } catch (error) {
      /* the next message seen marks again */
    }
  }

  async jumpTo(channelId, ts) {
    await this.open(channelId);
    window.location.hash = `#/${channelId}`; // after open: the hash handler sees it is current
    const history = historyOf(channelId);
    for (let page = 0; page < MAX_JUMP_PAGES && !history.get(ts) && history.hasMore; page += 1) {
      await loadOlder(channelId);
    }
    this.render({ bottom: false });
    return this.timeline.reveal(ts);
  }
}
