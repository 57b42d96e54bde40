// One message as DOM: avatar, author, time, text, edited marker, attachments, thread
// summary, reactions, and the actions its viewer may take.
import { errorNode } from '../errors.js';
import { authorName, userColor, userName } from '../names.js';
import { state } from '../store.js';
import { attachmentsNode } from './attachments.js';
import { blocksNode } from './blocks.js';
import { emojiNode } from './emoji.js';
import { renderMrkdwn } from './mrkdwn.js';
import { clockTime, fullTime, timeOf } from './time.js';
import { el } from '../dom.js';

const SYSTEM_SUBTYPES = new Set(['channel_join', 'channel_leave', 'channel_topic', 'channel_purpose',
  'channel_name', 'channel_archive', 'channel_unarchive', 'group_join', 'group_leave', 'tombstone']);

function button(label, action, title) {
  const node = el('button', `action ${action}`, label);
  node.type = 'button';
  node.dataset.action = action;
  node.title = title || label;
  return node;
}

function avatar(message) {
  const node = el('div', 'avatar', authorName(message).slice(0, 1).toUpperCase());
  node.style.backgroundColor = userColor(message.user);
  node.setAttribute('aria-hidden', 'true');
  return node;
}

function reactionsNode(message) {
  const row = el('div', 'reactions');
  for (const reaction of message.reactions || []) {
    const mine = reaction.users.includes(state.self.id);
    const chip = el('button', mine ? 'reaction mine' : 'reaction');
    chip.type = 'button';
    chip.dataset.action = 'toggle-reaction';
    chip.dataset.name = reaction.name;
    chip.title = `${reaction.users.map(userName).join(', ')} reacted with :${reaction.name}:`;
    chip.append(emojiNode(reaction.name), el('span', 'count', String(reaction.count)));
    row.append(chip);
  }
  return row;
}

function actionsNode(message, { inThread }) {
  const bar = el('div', 'actions');
  bar.append(button('☺', 'react', 'Add reaction'));
  if (!inThread) bar.append(button('↩', 'reply', 'Reply in thread'));
  const pinned = (message.pinned_to || []).length > 0;
  bar.append(button(pinned ? 'Unpin' : 'Pin', pinned ? 'unpin' : 'pin'));
  if (message.user === state.self.id) {
    bar.append(button('Edit', 'edit'), button('Delete', 'delete'));
  }
  return bar;
}

// A system message names whom it is about first ("<@U1> has joined the channel"), who is
// also its author, shown just before it: said once, as Slack does ("Bob  has joined...").
function withoutAuthor(message) {
  const self = `<@${message.user}> `;
  return message.user && message.text?.startsWith(self) ? message.text.slice(self.length) : message.text;
}

// options: { grouped, inThread, pending: outbox entry or null }
export function messageNode(message, options = {}) {
  const { grouped = false, inThread = false, pending = null } = options;
  const system = SYSTEM_SUBTYPES.has(message.subtype);
  // A deleted thread parent has no author to show: only that it was deleted, and its thread.
  const tombstone = message.subtype === 'tombstone';
  const classes = ['msg'];
  if (tombstone) classes.push('tombstone');
  if (grouped) classes.push('grouped');
  if (system) classes.push('system');
  if (pending) classes.push(pending.error ? 'pending failed' : 'pending');
  if (message.user === state.self.id) classes.push('mine');
  if ((message.pinned_to || []).length) classes.push('pinned');
  const node = el('div', classes.join(' '));
  node.dataset.ts = message.ts || '';
  node.tabIndex = -1; // the timeline lets one row at a time into the Tab order
  if (message.client_msg_id) node.dataset.clientMsgId = message.client_msg_id;
  node.append(grouped || tombstone ? el('div', 'gutter') : avatar(message));

  const body = el('div', 'body');
  if (!grouped && !tombstone) {
    const meta = el('div', 'meta');
    meta.append(el('span', 'author', authorName(message)));
    if (message.bot_id) meta.append(el('span', 'app-badge', 'APP')); // as Slack marks apps' messages
    if (message.ts) {
      const when = timeOf(message.ts);
      const time = el('time', 'when', clockTime(when));
      time.dateTime = when.toISOString();
      time.title = fullTime(when);
      meta.append(time);
    }
    if ((message.pinned_to || []).length) meta.append(el('span', 'pin-marker', '📌 Pinned'));
    body.append(meta);
  }
  const text = el('div', 'text');
  // Slack shows a message's blocks in place of its text (then only a fallback).
  text.append(blocksNode(message.blocks) || renderMrkdwn(system ? withoutAuthor(message) : message.text));
  if (message.edited) text.append(el('span', 'edited', ' (edited)'));
  body.append(text);
  if (pending) {
    const label = el('div', 'pending-label', pending.error ? '' : 'Sending…');
    if (pending.error) label.append(errorNode(pending.error, 'Not sent:'));
    body.append(label);
    if (pending.error) body.append(button('Retry', 'retry-send'), button('Discard', 'discard-send'));
  }
  if (message.attachments?.length) body.append(attachmentsNode(message.attachments));
  if (!inThread && message.reply_count) {
    const summary = button(
      `${message.reply_count} ${message.reply_count === 1 ? 'reply' : 'replies'}`,
      'reply',
      'Open thread',
    );
    summary.classList.add('thread-summary');
    body.append(summary);
  }
  if (message.reactions?.length) body.append(reactionsNode(message));
  node.append(body);
  if (!pending && !system && message.ts) node.append(actionsNode(message, { inThread }));
  return node;
}
