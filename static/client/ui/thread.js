// A thread in the side panel: the parent, its replies, and a composer that can also send
// the reply to the channel.
import { loadThread, threadKey, threadOf } from '../history.js';
import { pending } from '../outbox.js';
import { state } from '../store.js';
import { Composer } from './composer.js';
import { openPanel, panelKind } from './panel.js';
import { Timeline } from './timeline.js';
import { typingLine } from './typing.js';

export class ThreadView {
  // send({text, thread_ts, reply_broadcast}); onAction as for a Timeline; onTyping() while
  // a reply is typed
  constructor({ send, onAction, onTyping }) {
    Object.assign(this, { send, onAction, onTyping });
    this.channelId = null;
    this.threadTs = null;
  }

  isOpen(channelId) {
    return panelKind() === 'thread' && (!channelId || channelId === this.channelId);
  }

  // This thread's key in state.typing, when it is open.
  place() {
    return this.isOpen() ? threadKey(this.channelId, this.threadTs) : null;
  }

  async open(channelId, threadTs) {
    this.channelId = channelId;
    this.threadTs = threadTs;
    const body = openPanel('thread', 'Thread');
    const list = document.createElement('div');
    list.className = 'timeline thread-timeline';
    const form = document.createElement('form');
    form.className = 'composer thread-composer';
    const textarea = document.createElement('textarea');
    textarea.rows = 2;
    textarea.setAttribute('aria-label', 'Reply');
    const also = document.createElement('label');
    also.className = 'check';
    const broadcast = document.createElement('input');
    broadcast.type = 'checkbox';
    broadcast.name = 'reply_broadcast';
    also.append(broadcast, ' Also send to channel');
    form.append(textarea, also);
    this.typingBox = document.createElement('div');
    this.typingBox.className = 'typing';
    this.typingBox.setAttribute('aria-live', 'polite');
    body.append(list, this.typingBox, form);
    this.timeline = new Timeline(list, { inThread: true, onAction: this.onAction });
    this.composer = new Composer(form, {
      placeholder: 'Reply…',
      onTyping: this.onTyping,
      onSend: (text) => {
        this.send({ text, thread_ts: this.threadTs, reply_broadcast: broadcast.checked });
        broadcast.checked = false;
      },
    });
    this.form = form;
    this.renderReadOnly();
    this.render();
    this.renderTyping(); // someone may have been typing here before it opened
    await loadThread(channelId, threadTs);
    this.render(true);
    this.composer.focus();
  }

  render(bottom = null) {
    if (!this.isOpen()) return;
    const thread = threadOf(this.channelId, this.threadTs);
    const mine = pending().filter((e) => e.channel === this.channelId && e.thread_ts === this.threadTs);
    this.timeline.render(thread.messages, mine, { bottom });
  }

  // A thread of an archived channel can be read, not replied to (its channel may be archived
  // while it is open).
  renderReadOnly() {
    if (!this.isOpen()) return;
    const archived = Boolean(state.channels.get(this.channelId)?.is_archived);
    this.form.hidden = archived;
    this.timeline.container.classList.toggle('read-only', archived);
  }

  renderTyping() {
    if (this.isOpen()) this.typingBox.textContent = typingLine(this.place());
  }
}
