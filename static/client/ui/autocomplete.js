// @-mention, :emoji: and #channel suggestions for a textarea.
import { allEmojiNames, emojiNode } from '../render/emoji.js';
import { userName } from '../names.js';
import { state } from '../store.js';

const MAX_SUGGESTIONS = 8;
const TRIGGER = /(^|\s)([@:#])([\w.+'-]*)$/;
const BROADCASTS = ['here', 'channel', 'everyone'];

function candidates(kind, query) {
  const q = query.toLowerCase();
  if (kind === '@') {
    const people = [...state.users.values()]
      .filter((u) => !u.deleted && (u.name.toLowerCase().startsWith(q) || userName(u.id).toLowerCase().startsWith(q)))
      .slice(0, MAX_SUGGESTIONS)
      .map((u) => ({ insert: `@${u.name} `, label: `${userName(u.id)} (@${u.name})` }));
    const groups = BROADCASTS.filter((w) => w.startsWith(q)).map((w) => ({ insert: `@${w} `, label: `@${w}` }));
    return [...people, ...groups].slice(0, MAX_SUGGESTIONS);
  }
  if (kind === ':') {
    if (q.length < 2) return [];
    return allEmojiNames()
      .filter((n) => n.startsWith(q))
      .slice(0, MAX_SUGGESTIONS)
      .map((n) => ({ insert: `:${n}: `, label: `:${n}:`, emoji: n }));
  }
  return [...state.channels.values()]
    .filter((c) => !c.is_im && !c.is_mpim && (c.name || '').startsWith(q))
    .slice(0, MAX_SUGGESTIONS)
    .map((c) => ({ insert: `#${c.name} `, label: `#${c.name}` }));
}

export class Autocomplete {
  constructor(textarea) {
    this.textarea = textarea;
    this.list = document.createElement('ul');
    this.list.className = 'autocomplete';
    this.list.setAttribute('role', 'listbox');
    this.list.hidden = true;
    textarea.after(this.list);
    this.items = [];
    this.selected = 0;
    this.list.addEventListener('mousedown', (event) => {
      const item = event.target.closest('li');
      if (!item) return;
      event.preventDefault();
      this.choose(Number(item.dataset.index));
    });
  }

  get open() {
    return !this.list.hidden;
  }

  update() {
    const before = this.textarea.value.slice(0, this.textarea.selectionStart);
    const match = TRIGGER.exec(before);
    this.items = match ? candidates(match[2], match[3]) : [];
    this.tokenLength = match ? match[2].length + match[3].length : 0;
    this.selected = 0;
    this.draw();
  }

  draw() {
    this.list.replaceChildren();
    this.list.hidden = this.items.length === 0;
    this.items.forEach((item, index) => {
      const li = document.createElement('li');
      li.dataset.index = String(index);
      li.setAttribute('role', 'option');
      if (index === this.selected) li.classList.add('selected');
      if (item.emoji) li.append(emojiNode(item.emoji), ' ');
      li.append(item.label);
      this.list.append(li);
    });
  }

  close() {
    this.items = [];
    this.draw();
  }

  // Returns true when the key was for the suggestions.
  key(event) {
    if (!this.open) return false;
    if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      const step = event.key === 'ArrowDown' ? 1 : -1;
      this.selected = (this.selected + step + this.items.length) % this.items.length;
      this.draw();
    } else if (event.key === 'Enter' || event.key === 'Tab') {
      this.choose(this.selected);
    } else if (event.key === 'Escape') {
      this.close();
    } else {
      return false;
    }
    event.preventDefault();
    return true;
  }

  choose(index) {
    const item = this.items[index];
    if (!item) return;
    const t = this.textarea;
    const caret = t.selectionStart;
    const start = caret - this.tokenLength;
    t.value = t.value.slice(0, start) + item.insert + t.value.slice(caret);
    t.selectionStart = t.selectionEnd = start + item.insert.length;
    t.focus();
    this.close();
  }
}
