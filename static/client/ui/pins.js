// A conversation's pinned messages in the side panel (read-only while it is archived: no
// Unpin, as in the pane).
import { call } from '../api.js';
import { openPanel } from './panel.js';
import { Timeline } from './timeline.js';

export async function showPins(channelId, onAction) {
  const body = openPanel('pins', 'Pinned messages', channelId);
  const list = document.createElement('div');
  list.className = 'timeline pins-timeline';
  body.append(list);
  const { items } = await call('pins.list', { channel: channelId });
  const messages = items.map((item) => item.message).sort((a, b) => (a.ts < b.ts ? -1 : 1));
  new Timeline(list, { inThread: true, onAction }).render(messages, [], { bottom: false });
  if (!items.length) list.textContent = 'Nothing is pinned here yet.';
}
