// The right-hand panel: one of a thread, the member list, pins, channel details or search
// results at a time.
import { state } from '../store.js';

const panel = () => document.getElementById('side-panel');

// channelId: the conversation the panel is about (pins, members, details), if any. While it
// is archived the panel is read-only as the pane is (client.css's .read-only).
export function openPanel(kind, title, channelId = '') {
  const node = panel();
  node.hidden = false;
  node.dataset.kind = kind;
  node.querySelector('.panel-title').textContent = title;
  const body = node.querySelector('.panel-body');
  body.replaceChildren();
  body.dataset.channel = channelId;
  renderPanelReadOnly();
  return body;
}

export function panelKind() {
  const node = panel();
  return node.hidden ? null : node.dataset.kind;
}

// The conversation the open panel is about, or null.
export function panelChannel() {
  const node = panel();
  return node.hidden ? null : node.querySelector('.panel-body').dataset.channel || null;
}

// Archived or unarchived while the panel is open: its write actions go or come back.
export function renderPanelReadOnly() {
  const channel = state.channels.get(panelChannel());
  panel().classList.toggle('read-only', Boolean(channel?.is_archived));
}

export function closePanel() {
  const node = panel();
  node.hidden = true;
  node.dataset.kind = '';
  const body = node.querySelector('.panel-body');
  body.replaceChildren();
  body.dataset.channel = '';
  node.classList.remove('read-only');
}
