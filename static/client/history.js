// A conversation's (or a thread's) messages as loaded so far, oldest first, by ts.
import { call } from './api.js';
import { state } from './store.js';

export const PAGE_SIZE = 50;
// The first page only has to fill the screen: fewer rows to build when a conversation opens.
const FIRST_PAGE_SIZE = 30;
const THREAD_PAGE_SIZE = 200;

export class History {
  constructor() {
    this.messages = [];
    this.byTs = new Map();
    this.hasMore = true;
    this.cursor = '';
    this.loaded = false;
    this.loading = null;
  }

  upsert(message) {
    const known = this.byTs.get(message.ts);
    this.byTs.set(message.ts, message);
    if (known) {
      this.messages[this.messages.indexOf(known)] = message;
      return;
    }
    let at = this.messages.length; // new messages almost always go last
    while (at > 0 && this.messages[at - 1].ts > message.ts) at -= 1;
    this.messages.splice(at, 0, message);
  }

  remove(ts) {
    const known = this.byTs.get(ts);
    if (!known) return false;
    this.byTs.delete(ts);
    this.messages.splice(this.messages.indexOf(known), 1);
    return true;
  }

  get(ts) {
    return this.byTs.get(ts);
  }
}

export function historyOf(channelId) {
  if (!state.histories.has(channelId)) state.histories.set(channelId, new History());
  return state.histories.get(channelId);
}

export function threadKey(channelId, threadTs) {
  return `${channelId}/${threadTs}`;
}

export function threadOf(channelId, threadTs) {
  const key = threadKey(channelId, threadTs);
  if (!state.threads.has(key)) state.threads.set(key, new History());
  return state.threads.get(key);
}

// One more page back in time (the first call loads the newest page).
export function loadOlder(channelId) {
  const history = historyOf(channelId);
  if (history.loading) return history.loading;
  if (history.loaded && !history.hasMore) return Promise.resolve(0);
  history.loading = (async () => {
    try {
      const args = { channel: channelId, limit: history.loaded ? PAGE_SIZE : FIRST_PAGE_SIZE };
      if (history.cursor) args.cursor = history.cursor;
      const page = await call('conversations.history', args);
      for (const message of page.messages) history.upsert(message);
      history.hasMore = Boolean(page.has_more);
      history.cursor = page.response_metadata?.next_cursor || '';
      history.loaded = true;
      return page.messages.length;
    } finally {
      history.loading = null;
    }
  })();
  return history.loading;
}

export async function loadThread(channelId, threadTs) {
  const thread = threadOf(channelId, threadTs);
  let cursor = '';
  do {
    const args = { channel: channelId, ts: threadTs, limit: THREAD_PAGE_SIZE };
    if (cursor) args.cursor = cursor;
    const page = await call('conversations.replies', args);
    for (const message of page.messages) thread.upsert(message);
    cursor = page.response_metadata?.next_cursor || '';
  } while (cursor);
  thread.loaded = true;
  thread.hasMore = false;
  return thread;
}
