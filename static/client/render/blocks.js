// Block Kit as safe DOM: the text of section, header, context, divider and rich_text blocks,
// which Slack shows in place of a message's text (bots post blocks with empty text).
// mrkdwn goes through the mrkdwn renderer; plain_text and rich_text are only ever text.
import { emojiNode } from './emoji.js';
import { SAFE_URL, angleMarkup, el, link, renderMrkdwn } from './mrkdwn.js';

const isText = (value) => typeof value === 'string' && value !== '';

// A text object ({type: 'mrkdwn' | 'plain_text', text}), or null when it has no text.
function textObject(object) {
  if (!object || !isText(object.text)) return null;
  if (object.type === 'mrkdwn') return renderMrkdwn(object.text);
  return document.createTextNode(object.text);
}

// Raw text (rich_text is not escaped as mrkdwn is) with its line breaks.
function plainLines(text) {
  const nodes = [];
  text.split('\n').forEach((line, index) => {
    if (index > 0) nodes.push(el('br'));
    if (line) nodes.push(document.createTextNode(line));
  });
  return nodes;
}

function styled(nodes, style) {
  let wrapped = nodes;
  if (style?.code) wrapped = [el('code', '', wrapped)];
  if (style?.strike) wrapped = [el('del', '', wrapped)];
  if (style?.italic) wrapped = [el('em', '', wrapped)];
  if (style?.bold) wrapped = [el('strong', '', wrapped)];
  return wrapped;
}

// One element of a rich_text section: text, link, user, channel, broadcast or emoji.
function richInline(element) {
  if (!element || typeof element !== 'object') return [];
  switch (element.type) {
    case 'text':
      return isText(element.text) ? styled(plainLines(element.text), element.style) : [];
    case 'link': {
      const label = isText(element.text) ? element.text : element.url;
      if (!isText(label)) return [];
      const node = isText(element.url) && SAFE_URL.test(element.url) ? link(element.url, label) : label;
      return styled([node], element.style);
    }
    case 'user':
      return isText(element.user_id) ? [angleMarkup(`@${element.user_id}`)] : [];
    case 'channel':
      return isText(element.channel_id) ? [angleMarkup(`#${element.channel_id}`)] : [];
    case 'broadcast':
      return isText(element.range) ? [angleMarkup(`!${element.range}`)] : [];
    case 'emoji':
      return isText(element.name) ? [emojiNode(element.name)] : [];
    default:
      return isText(element.text) ? plainLines(element.text) : [];
  }
}

const richInlines = (elements) => (Array.isArray(elements) ? elements.flatMap(richInline) : []);

// A rich_text block's parts: sections, lists, preformatted text and quotes.
function richPart(part) {
  if (!part || typeof part !== 'object') return null;
  switch (part.type) {
    case 'rich_text_section':
      return el('div', 'rich-section', richInlines(part.elements));
    case 'rich_text_preformatted':
      return el('pre', 'code-block', [el('code', '', richInlines(part.elements))]);
    case 'rich_text_quote':
      return el('blockquote', '', richInlines(part.elements));
    case 'rich_text_list': {
      const list = el(part.style === 'ordered' ? 'ol' : 'ul');
      for (const item of Array.isArray(part.elements) ? part.elements : []) {
        list.append(el('li', '', richInlines(item?.elements)));
      }
      return list;
    }
    default:
      return null;
  }
}

function block(item) {
  if (!item || typeof item !== 'object') return null;
  switch (item.type) {
    case 'section': {
      const parts = [];
      const text = textObject(item.text);
      if (text) parts.push(el('div', 'block-text', [text]));
      const fields = (Array.isArray(item.fields) ? item.fields : []).map(textObject).filter(Boolean);
      if (fields.length) parts.push(el('div', 'block-fields', fields.map((f) => el('div', '', [f]))));
      return parts.length ? el('div', 'block section', parts) : null;
    }
    case 'header': {
      const text = textObject(item.text);
      return text ? el('div', 'block header', [text]) : null;
    }
    case 'context': {
      const texts = (Array.isArray(item.elements) ? item.elements : []).map(textObject).filter(Boolean);
      return texts.length ? el('div', 'block context', texts.map((t) => el('span', '', [t]))) : null;
    }
    case 'divider':
      return el('hr', 'block divider');
    case 'rich_text': {
      const parts = (Array.isArray(item.elements) ? item.elements : []).map(richPart).filter(Boolean);
      return parts.length ? el('div', 'block rich-text', parts) : null;
    }
    default:
      return null;
  }
}

// The blocks as one node, or null when none has anything to show (then the text is shown).
export function blocksNode(blocks) {
  if (!Array.isArray(blocks)) return null;
  const shown = blocks.map(block).filter(Boolean);
  if (!shown.some((node) => node.tagName !== 'HR')) return null;
  return el('div', 'blocks', shown);
}
