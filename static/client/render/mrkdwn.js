// Slack mrkdwn to DOM nodes. Text only ever becomes text nodes: nothing here is parsed as HTML.
import { channelName, userName } from '../names.js';
import { state } from '../store.js';
import { emojiNode } from './emoji.js';

const INLINE = new RegExp(
  [
    '<([^<>\\n]+)>', // 1: <@U..>, <#C..|name>, <!here>, <url|label>
    '`([^`\\n]+)`', // 2: code
    '(?<![\\w*])\\*(?!\\s)([^*\\n]+?)\\*(?![\\w*])', // 3: bold
    '(?<![\\w_])_(?!\\s)([^_\\n]+?)_(?![\\w_])', // 4: italic
    '(?<![\\w~])~(?!\\s)([^~\\n]+?)~(?![\\w~])', // 5: strike
    ':([a-z0-9_+\'-]+(?:::skin-tone-\\d)?):', // 6: emoji
    // 7: a bare link. It ends before a | (Slack's label separator) and before an escaped
    // < or >: the composer sends a typed "<https://x|label>" as "&lt;https://x|label&gt;".
    '(https?:\\/\\/(?:(?!&[lg]t;)[^\\s<>"|])*(?:(?!&[lg]t;)[^\\s<>"|.,;:!?)\\]\']))',
  ].join('|'),
  'gi',
);
export const SAFE_URL = /^(https?:|mailto:)/i;

// Slack escapes only these three in message text.
export function unescapeText(text) {
  return text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

export function el(tag, className, children = []) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) node.append(child);
  return node;
}

export function link(url, label) {
  const a = el('a');
  a.href = url;
  a.textContent = label;
  a.target = '_blank';
  a.rel = 'noopener noreferrer';
  return a;
}

// One <...> of Slack's markup: a mention, a channel, a broadcast or a link (only http(s) and
// mailto: become links). `body` is Slack-escaped text.
export function angleMarkup(body) {
  const [target, label] = body.split(/\|(.*)/s);
  if (target.startsWith('@')) {
    const id = target.slice(1);
    const node = el('span', id === state.self?.id ? 'mention me' : 'mention');
    node.textContent = `@${state.users.has(id) ? userName(id) : unescapeText(label || id)}`;
    return node;
  }
  if (target.startsWith('#')) {
    const id = target.slice(1);
    const node = el('a', 'channel-link');
    node.href = `#/${encodeURIComponent(id)}`;
    const known = state.channels.get(id);
    node.textContent = `#${known ? channelName(known) : unescapeText(label || id)}`;
    return node;
  }
  if (target.startsWith('!')) {
    const word = target.slice(1).split('^')[0];
    const node = el('span', 'mention me');
    node.textContent = label ? unescapeText(label) : `@${word}`;
    return node;
  }
  const url = unescapeText(target);
  if (SAFE_URL.test(url)) return link(url, unescapeText(label || target));
  return document.createTextNode(`<${unescapeText(body)}>`);
}

function inline(text) {
  const nodes = [];
  let last = 0;
  INLINE.lastIndex = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) nodes.push(document.createTextNode(unescapeText(text.slice(last, match.index))));
    last = match.index + match[0].length;
    const [, angle, code, bold, italic, strike, emoji, bare] = match;
    if (angle !== undefined) nodes.push(angleMarkup(angle));
    else if (code !== undefined) nodes.push(Object.assign(el('code'), { textContent: unescapeText(code) }));
    else if (bold !== undefined) nodes.push(el('strong', '', inline(bold)));
    else if (italic !== undefined) nodes.push(el('em', '', inline(italic)));
    else if (strike !== undefined) nodes.push(el('del', '', inline(strike)));
    else if (emoji !== undefined) nodes.push(emojiNode(emoji.toLowerCase()));
    else if (bare !== undefined) nodes.push(link(unescapeText(bare), unescapeText(bare)));
  }
  if (last < text.length) nodes.push(document.createTextNode(unescapeText(text.slice(last))));
  return nodes;
}

function lines(text) {
  const nodes = [];
  text.split('\n').forEach((line, index) => {
    if (index > 0) nodes.push(el('br'));
    nodes.push(...inline(line));
  });
  return nodes;
}

// Consecutive "> " lines become one quote.
function paragraphs(text) {
  const nodes = [];
  let quote = null;
  let plain = [];
  const flushPlain = () => {
    if (plain.length) nodes.push(...lines(plain.join('\n')));
    plain = [];
  };
  for (const line of text.split('\n')) {
    const quoted = /^(&gt;|>)\s?(.*)$/.exec(line);
    if (quoted) {
      flushPlain();
      if (!quote) nodes.push((quote = el('blockquote')));
      else quote.append(el('br'));
      quote.append(...inline(quoted[2]));
    } else {
      quote = null;
      plain.push(line);
    }
  }
  flushPlain();
  return nodes;
}

export function renderMrkdwn(text) {
  const fragment = document.createDocumentFragment();
  const parts = String(text || '').split(/```/);
  parts.forEach((part, index) => {
    // Odd parts sit between fences; an unclosed fence is plain text.
    if (index % 2 === 1 && index < parts.length - 1) {
      const pre = el('pre', 'code-block');
      pre.append(Object.assign(el('code'), { textContent: unescapeText(part.replace(/^\n/, '')) }));
      fragment.append(pre);
    } else {
      const body = index % 2 === 1 ? `\`\`\`${part}` : part;
      fragment.append(...paragraphs(body.replace(/^\n/, '').replace(/\n$/, '')));
    }
  });
  return fragment;
}
