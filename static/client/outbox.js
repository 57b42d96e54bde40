// Pending sends, kept in localStorage by client_msg_id until the server has them.
//
// Every send goes through here: it is stored first, shown as pending, then posted. A send
// whose answer never came (offline, a reload, a dropped socket) is posted again with the
// same client_msg_id, and the server's idempotency keeps it to exactly one message.
import { call } from './api.js';
import { emit, state } from './store.js';

const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 15000;

let storageKey = 'outbox';
let flushing = null;
let retryTimer = null;
let failures = 0;

export function openOutbox(teamId, userId) {
  storageKey = `outbox:${teamId}:${userId}`;
}

export function pending() {
  try {
    return JSON.parse(localStorage.getItem(storageKey) || '[]');
  } catch (error) {
    return [];
  }
}

function save(entries) {
  localStorage.setItem(storageKey, JSON.stringify(entries));
  emit('outbox');
}

function newClientMsgId() {
  // Not crypto.randomUUID(): that needs a secure context, and the client may run on plain http.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function enqueue({ channel, text, thread_ts = null, reply_broadcast = false }) {
  const entry = {
    client_msg_id: newClientMsgId(),
    channel,
    text,
    thread_ts,
    reply_broadcast,
    created: Date.now() / 1000,
    user: state.self.id,
  };
  save([...pending(), entry]);
  flush();
  return entry;
}

export function forget(clientMsgId) {
  const entries = pending();
  const left = entries.filter((e) => e.client_msg_id !== clientMsgId);
  if (left.length !== entries.length) save(left);
}

export function retry(clientMsgId) {
  save(pending().map((e) => (e.client_msg_id === clientMsgId ? { ...e, error: undefined } : e)));
  flush();
}

function scheduleRetry() {
  if (retryTimer) return;
  failures += 1;
  const ceiling = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (failures - 1));
  const delay = ceiling / 2 + Math.random() * (ceiling / 2);
  retryTimer = setTimeout(() => {
    retryTimer = null;
    flush();
  }, delay);
}

async function sendAll() {
  for (const entry of pending()) {
    if (entry.error) continue;
    try {
      const answer = await call('chat.postMessage', {
        channel: entry.channel,
        text: entry.text,
        thread_ts: entry.thread_ts || undefined,
        reply_broadcast: entry.reply_broadcast || undefined,
        client_msg_id: entry.client_msg_id,
      });
      failures = 0;
      forget(entry.client_msg_id);
      emit('sent', { channel: answer.channel, message: answer.message });
    } catch (error) {
      if (error.retryable || error.code === 'not_authed') {
        scheduleRetry();
        return;
      }
      // Final (e.g. the channel was archived): keep it visible with its reason.
      save(pending().map((e) => (e.client_msg_id === entry.client_msg_id ? { ...e, error: error.code } : e)));
    }
  }
}

// One flush at a time; a flush asked for meanwhile runs again after it.
export function flush() {
  if (retryTimer) {
    clearTimeout(retryTimer);
    retryTimer = null;
  }
  if (flushing) {
    flushing.again = true;
    return flushing.done;
  }
  flushing = { again: false };
  flushing.done = (async () => {
    do {
      flushing.again = false;
      await sendAll();
    } while (flushing.again && !retryTimer);
    flushing = null;
  })();
  return flushing.done;
}
