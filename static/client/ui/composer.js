// A message box: Enter sends, Shift+Enter is a new line; typing is announced; @, : and #
// suggest. What people type is escaped as Slack expects; @handles become mentions.
import { state } from '../store.js';
import { Autocomplete } from './autocomplete.js';

const BROADCASTS = new Set(['here', 'channel', 'everyone']);
// An @ or # starts a reference after a space, the start, or an opening bracket or quote;
// a name ends with a letter or digit, so "@bob." or "@bob," leaves the punctuation out.
const MENTION = /(^|[\s([{"'])@(\w(?:[\w.-]*\w)?)/g;
const CHANNEL = /(^|[\s([{"'])#(\w(?:[\w-]*\w)?)/g;

export function encodeOutgoing(text) {
  const escaped = text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  // Matched without case on both sides: an imported handle may have capitals.
  const byName = new Map([...state.users.values()].map((u) => [u.name.toLowerCase(), u.id]));
  const channels = new Map(
    [...state.channels.values()].filter((c) => c.name && !c.is_mpim).map((c) => [c.name.toLowerCase(), c]),
  );
  return escaped
    .replace(MENTION, (all, before, typed) => {
      const name = typed.toLowerCase(); // people type @Bob
      if (BROADCASTS.has(name)) return `${before}<!${name}>`;
      return byName.has(name) ? `${before}<@${byName.get(name)}>` : all;
    })
    .replace(CHANNEL, (all, before, typed) => {
      const channel = channels.get(typed.toLowerCase());
      return channel ? `${before}<#${channel.id}|${channel.name}>` : all;
    });
}

export class Composer {
  // onSend(encodedText) ; onTyping()
  constructor(form, { onSend, onTyping, placeholder = '' }) {
    this.form = form;
    this.textarea = form.querySelector('textarea');
    if (placeholder) this.textarea.placeholder = placeholder;
    this.autocomplete = new Autocomplete(this.textarea);
    this.onSend = onSend;
    this.drafts = new Map(); // what was typed in each conversation and not sent
    this.draftOf = null;
    this.textarea.addEventListener('keydown', (event) => {
      if (this.autocomplete.key(event)) return;
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
    this.textarea.addEventListener('input', () => {
      this.autocomplete.update();
      if (this.textarea.value.trim()) onTyping();
    });
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.send();
    });
  }

  send() {
    const text = this.textarea.value;
    if (!text.trim()) return;
    this.textarea.value = '';
    this.autocomplete.close();
    this.onSend(encodeOutgoing(text));
  }

  // The box holds one conversation's draft: switching keeps what was typed with the
  // conversation it was typed in, as Slack does, instead of carrying it to the next.
  showDraftOf(key) {
    if (key === this.draftOf) return;
    if (this.draftOf !== null) {
      if (this.textarea.value) this.drafts.set(this.draftOf, this.textarea.value);
      else this.drafts.delete(this.draftOf);
    }
    this.draftOf = key;
    this.textarea.value = this.drafts.get(key) || '';
    this.autocomplete.close();
  }

  setPlaceholder(text) {
    this.textarea.placeholder = text;
  }

  focus() {
    this.textarea.focus();
  }
}
