// Search results in the side panel; a click jumps to the message in its conversation.
import { call } from '../api.js';
import { errorNode } from '../errors.js';
import { channelLabel, matchAuthorName } from '../names.js';
import { renderMrkdwn } from '../render/mrkdwn.js';
import { fullTime, timeOf } from '../render/time.js';
import { state } from '../store.js';
import { openPanel } from './panel.js';

const RESULTS = 20;

export async function showSearch(query, onJump) {
  const body = openPanel('search', `Results for “${query}”`);
  const status = document.createElement('p');
  status.className = 'muted';
  status.textContent = 'Searching…';
  body.append(status);
  let answer;
  try {
    answer = await call('search.messages', { query, count: RESULTS, sort: 'timestamp' });
  } catch (error) {
    status.replaceChildren(errorNode(error, 'Search failed.'));
    return;
  }
  const matches = answer.messages.matches;
  status.textContent = `${answer.messages.total} result${answer.messages.total === 1 ? '' : 's'}`;
  const list = document.createElement('ul');
  list.className = 'search-results';
  for (const match of matches) {
    const channelId = match.channel.id;
    const li = document.createElement('li');
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'search-result';
    open.dataset.channel = channelId;
    open.dataset.ts = match.ts;
    const where = document.createElement('div');
    where.className = 'where';
    const channel = state.channels.get(channelId) || { id: channelId, name: match.channel.name };
    where.textContent = `${channelLabel(channel)} · ${matchAuthorName(match)} · ${fullTime(timeOf(match.ts))}`;
    const text = document.createElement('div');
    text.className = 'text';
    text.append(renderMrkdwn(match.text));
    open.append(where, text);
    open.addEventListener('click', () => onJump(channelId, match.ts));
    li.append(open);
    list.append(li);
  }
  body.append(list);
}
