// Message attachments: link preview cards and bots' attachments, as safe DOM.
import { blocksNode } from './blocks.js';
import { link, renderMrkdwn } from './mrkdwn.js';
import { safeImageUrl } from './safe_url.js';
import { el } from '../dom.js';

function image(url, className) {
  const img = el('img', className);
  img.src = url;
  img.alt = '';
  img.loading = 'lazy';
  img.referrerPolicy = 'no-referrer';
  return img;
}

function card(attachment) {
  const node = el('div', 'attachment');
  if (/^#?[0-9a-f]{6}$/i.test(attachment.color || '')) {
    node.style.borderLeftColor = attachment.color.startsWith('#') ? attachment.color : `#${attachment.color}`;
  }
  if (attachment.pretext) {
    const pretext = el('div', 'pretext');
    pretext.append(renderMrkdwn(attachment.pretext));
    node.append(pretext);
  }
  const source = attachment.service_name || attachment.author_name;
  if (source) node.append(el('div', 'service', source));
  if (attachment.title) {
    const href = attachment.title_link || attachment.from_url || '';
    const title = el('div', 'title');
    title.append(/^https?:/i.test(href) ? link(href, attachment.title) : attachment.title);
    node.append(title);
  }
  const blocks = blocksNode(attachment.blocks);
  const fields = Array.isArray(attachment.fields) ? attachment.fields : [];
  // The fallback is the plain summary of a card that shows nothing else.
  const bare = !attachment.pretext && !attachment.title && !blocks && !fields.length;
  const text = attachment.text || (bare ? attachment.fallback : '');
  if (text) {
    const body = el('div', 'text');
    body.append(renderMrkdwn(text));
    node.append(body);
  }
  if (blocks) node.append(blocks);
  if (fields.length) {
    const list = el('dl', 'fields');
    for (const field of fields) {
      list.append(el('dt', '', field?.title || ''));
      const value = el('dd');
      value.append(renderMrkdwn(field?.value || ''));
      list.append(value);
    }
    node.append(list);
  }
  const picture = safeImageUrl(attachment.image_url || attachment.thumb_url);
  if (picture) node.append(image(picture, 'preview-image'));
  if (attachment.footer) node.append(el('div', 'footer', attachment.footer));
  return node;
}

export function attachmentsNode(attachments) {
  const list = el('div', 'attachments');
  for (const attachment of attachments || []) {
    if (attachment && typeof attachment === 'object') list.append(card(attachment));
  }
  return list;
}
