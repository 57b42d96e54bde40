// A channel's details in the side panel, as Slack's About tab: its name, topic and
// description (the purpose), who made it and when, with the buttons to change them.
import { channelLabel, userName } from '../names.js';
import { renderMrkdwn } from '../render/mrkdwn.js';
import { dayLabel, timeOf } from '../render/time.js';
import { isAdmin, state } from '../store.js';
import { showError } from './banner.js';
import { editPurpose, editTopic, mayDescribe, mayRename, renameChannel } from './conversations.js';
import { openPanel, panelChannel, panelKind } from './panel.js';
import { el } from '../dom.js';

// A labelled part of the details; `edit` (when the viewer may change it): [label, work].
function section(name, title, content, edit) {
  const box = el('section', 'about-part');
  box.dataset.part = name;
  const head = el('div', 'about-head');
  const heading = el('h3', '', title);
  heading.id = `about-${name}`;
  head.append(heading);
  if (edit) {
    const [label, work] = edit;
    const button = el('button', 'secondary about-edit', label);
    button.type = 'button';
    button.dataset.edit = name;
    button.setAttribute('aria-describedby', heading.id);
    button.addEventListener('click', () => Promise.resolve().then(work).catch(showError));
    head.append(button);
  }
  box.setAttribute('aria-labelledby', heading.id);
  box.append(head, content);
  return box;
}

function textOrNone(value, none) {
  const box = el('div', 'about-text');
  if (value) box.append(renderMrkdwn(value));
  else box.append(el('span', 'muted', none));
  return box;
}

// What the panel shows of a channel: drawn again only when one of these changed, as
// 'channels' fires for every open and unread count (and a redraw would drop the focus).
const signature = (channel) =>
  JSON.stringify([
    channel.name,
    channel.topic?.value,
    channel.purpose?.value,
    channel.is_archived,
    channel.is_member,
    isAdmin(),
  ]);

function draw(body, channel) {
  const id = channel.id;
  const describe = mayDescribe(channel);
  const parts = [
    section('name', 'Channel name', el('div', 'about-text', channelLabel(channel)),
      mayRename(channel) && ['Rename', () => renameChannel(id)]),
    section('topic', 'Topic', textOrNone(channel.topic?.value, 'No topic yet.'),
      describe && ['Edit topic', () => editTopic(id)]),
    section('purpose', 'Description', textOrNone(channel.purpose?.value, 'No description yet.'),
      describe && ['Edit description', () => editPurpose(id)]),
  ];
  if (channel.created) {
    const made = `Created on ${dayLabel(timeOf(channel.created))}`;
    parts.push(el('p', 'muted about-created', channel.creator ? `${made} by ${userName(channel.creator)}` : made));
  }
  body.replaceChildren(...parts);
  body.dataset.signature = signature(channel);
}

export function showDetails(channelId) {
  const channel = state.channels.get(channelId);
  if (!channel) return;
  draw(openPanel('details', 'Channel details', channelId), channel);
}

// Someone renamed it or changed its topic or description (here, or anywhere: the events
// bring it): the open details follow. The focused button is focused again once redrawn.
export function refreshDetails() {
  if (panelKind() !== 'details') return;
  const channel = state.channels.get(panelChannel());
  const body = document.querySelector('#side-panel .panel-body');
  if (!channel || body.dataset.signature === signature(channel)) return;
  const focused = document.activeElement?.closest?.('#side-panel [data-edit]')?.dataset.edit;
  draw(body, channel);
  if (focused) body.querySelector(`[data-edit="${focused}"]`)?.focus();
}
