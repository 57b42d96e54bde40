// A scrolling list of messages (the channel pane or a thread): day separators, grouping of
// consecutive messages, pending sends at the end, and scroll-back that asks for older pages.
import { messageNode } from '../render/message.js';
import { dayKey, dayLabel, timeOf } from '../render/time.js';

const GROUP_WITHIN_SECS = 5 * 60;
const NEAR_TOP_PX = 200;
const AT_BOTTOM_PX = 40;

function groupsWith(previous, message) {
  return (
    previous &&
    !previous.subtype &&
    !message.subtype &&
    previous.user === message.user &&
    previous.username === message.username &&
    parseFloat(message.ts) - parseFloat(previous.ts) < GROUP_WITHIN_SECS &&
    dayKey(previous.ts) === dayKey(message.ts)
  );
}

export class Timeline {
  // onAction(action, message, pendingEntry, buttonElement); onNeedOlder()
  constructor(container, { inThread = false, onAction, onNeedOlder = null }) {
    Object.assign(this, { container, inThread, onAction, onNeedOlder });
    this.byNode = new WeakMap();
    // Rendered nodes by message object: a message that did not change (the history
    // replaces an object whenever its message changes) keeps its node on the next render.
    this.nodes = new WeakMap();
    container.addEventListener('click', (event) => this.clicked(event));
    container.addEventListener('scroll', () => this.scrolled(), { passive: true });
    // Keyboard, as in Slack: one row at a time is in the Tab order (a roving tabindex: the
    // last one focused, else the newest), ArrowUp/ArrowDown move between rows, Tab goes on
    // into the focused row's buttons (its actions show while it has focus) and Escape comes back.
    container.addEventListener('keydown', (event) => this.keyed(event));
    container.addEventListener('focusin', (event) => {
      const row = event.target.closest('.msg');
      if (row && this.container.contains(row)) this.rove(row);
    });
  }

  rove(row) {
    for (const other of this.container.querySelectorAll('.msg[tabindex="0"]')) other.tabIndex = -1;
    row.tabIndex = 0;
    this.roving = row.dataset.ts; // kept when the row is drawn anew (an edit, a reaction)
  }

  keyed(event) {
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    const row = event.target.closest('.msg');
    if (!row || !this.container.contains(row)) return;
    if (event.key === 'Escape' && event.target.closest('button')) {
      event.preventDefault();
      row.focus();
    } else if (event.target === row && (event.key === 'ArrowUp' || event.key === 'ArrowDown')) {
      const rows = [...this.container.querySelectorAll('.msg')];
      const next = rows[rows.indexOf(row) + (event.key === 'ArrowUp' ? -1 : 1)];
      event.preventDefault();
      if (next) next.focus();
    }
  }

  clicked(event) {
    const target = event.target.closest('[data-action]');
    const row = event.target.closest('.msg');
    if (!target || !row || !this.container.contains(row)) return;
    const { message, pending } = this.byNode.get(row) || {};
    if (message) this.onAction(target.dataset.action, message, pending, target);
  }

  scrolled() {
    if (this.onNeedOlder && this.container.scrollTop < NEAR_TOP_PX) this.onNeedOlder();
  }

  atBottom() {
    const c = this.container;
    return c.scrollHeight - c.scrollTop - c.clientHeight < AT_BOTTOM_PX;
  }

  // messages: oldest first; pending: outbox entries; options.prepended keeps the view
  // where it was when older messages came in above it; options.hasMore shows a loader.
  render(messages, pending = [], { prepended = false, hasMore = false, bottom = null } = {}) {
    const c = this.container;
    // Layout is read only when needed: each read forces the browser to lay the page out.
    const stick = bottom ?? (!prepended && this.atBottom());
    const anchor = prepended ? this.firstVisible() : null;
    const fragment = document.createDocumentFragment();
    const top = document.createElement('div');
    top.className = hasMore ? 'history-top loading' : 'history-top';
    top.textContent = hasMore ? 'Loading older messages…' : this.inThread ? '' : 'This is the very beginning.';
    fragment.append(top);
    let previous = null;
    let day = 0;
    const rows = [
      ...messages.map((message) => ({ message, pending: null })),
      ...pending.map((entry) => ({ message: { ...entry, ts: '' }, pending: entry })),
    ];
    for (const { message, pending: entry } of rows) {
      if (message.ts && dayKey(message.ts) !== day) {
        day = dayKey(message.ts);
        const separator = document.createElement('div');
        separator.className = 'day-separator';
        separator.setAttribute('role', 'separator');
        separator.textContent = dayLabel(timeOf(message.ts));
        fragment.append(separator);
        previous = null;
      }
      const grouped = !entry && !this.inThread ? groupsWith(previous, message) : false;
      fragment.append(this.nodeFor(message, entry, grouped));
      previous = entry ? null : message;
    }
    // Replacing the rows drops the focus; it goes back to the same element (or its row).
    const focused = c.contains(document.activeElement) ? document.activeElement : null;
    const focusedTs = focused?.closest('.msg')?.dataset.ts;
    c.replaceChildren(fragment);
    const drawn = [...c.querySelectorAll('.msg')];
    const roving = drawn.find((n) => this.roving && n.dataset.ts === this.roving) || drawn.at(-1);
    if (roving) this.rove(roving);
    if (focused) {
      const again = c.contains(focused)
        ? focused
        : [...c.querySelectorAll('.msg')].find((n) => focusedTs && n.dataset.ts === focusedTs);
      again?.focus({ preventScroll: true });
    }
    if (anchor) this.keep(anchor);
    else if (stick) c.scrollTop = c.scrollHeight;
  }

  // The first message in view and where it is: older messages coming in above it must
  // not move it (day separators and grouping around it may change height).
  firstVisible() {
    const top = this.container.getBoundingClientRect().top;
    for (const row of this.container.querySelectorAll('.msg')) {
      const box = row.getBoundingClientRect();
      if (box.bottom > top) return { ts: row.dataset.ts, offset: box.top - top };
    }
    return null;
  }

  keep(anchor) {
    const row = [...this.container.querySelectorAll('.msg')].find((n) => n.dataset.ts === anchor.ts);
    if (!row) return;
    const top = this.container.getBoundingClientRect().top;
    this.container.scrollTop += row.getBoundingClientRect().top - top - anchor.offset;
  }

  nodeFor(message, entry, grouped) {
    const known = entry ? null : this.nodes.get(message);
    if (known && known.grouped === grouped) return known.node;
    const node = messageNode(message, { grouped, inThread: this.inThread, pending: entry });
    this.byNode.set(node, { message, pending: entry });
    if (!entry) this.nodes.set(message, { node, grouped });
    return node;
  }

  reveal(ts) {
    const node = [...this.container.querySelectorAll('.msg')].find((n) => n.dataset.ts === ts);
    if (!node) return false;
    node.scrollIntoView({ block: 'center' });
    node.classList.add('highlight');
    setTimeout(() => node.classList.remove('highlight'), 2500);
    return true;
  }
}
