// The realtime socket: reconnects with exponential backoff and jitter, catching up from
// the last event id it saw (`since`); a `resync_required` answer asks for a new boot.
// It comes back through the latest `reconnect_url` the server sent (no rtm.connect call:
// a reconnect storm then costs the API nothing), else through a fresh rtm.connect URL.

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30000;
const PING_EVERY_MS = 15000; // a silent dead socket is noticed within two pings
const CLOSE_RESYNC = 4002;
const CLOSE_BUSY = 4029; // admission refused for now: a reconnect ticket stays good

export class Connection {
  // connectUrl(): a fresh socket URL (rtm.connect); onFrame(frame); onState(state);
  // onResync(): boot again and call start() with the new URL and cursor.
  constructor({ connectUrl, onFrame, onState, onResync }) {
    Object.assign(this, { connectUrl, onFrame, onState, onResync });
    this.ws = null;
    this.cursor = 0;
    this.attempts = 0;
    this.timer = null;
    this.pinger = null;
    this.awaitingPong = false;
    this.nextId = 1;
    this.reconnectUrl = null; // one use, a few minutes: the server renews it while live
    this.resyncing = false; // booting again: no socket until start()
    this.retryAfterMs = 0; // what the server's last refusal asked for
    window.addEventListener('online', () => this.reconnectNow());
    window.addEventListener('offline', () => this.drop());
  }

  start(url, cursor) {
    this.cursor = cursor;
    this.reconnectUrl = null; // from before a resync
    this.resyncing = false;
    this.open(url);
  }

  open(url, reconnecting = false) {
    this.close();
    const target = new URL(url, window.location.href);
    target.searchParams.set('since', String(this.cursor));
    const ws = new WebSocket(target.toString());
    this.ws = ws;
    let resync = false;
    let greeted = false;
    ws.onmessage = (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch (error) {
        return;
      }
      if (typeof frame.event_id === 'number' && frame.event_id > this.cursor) this.cursor = frame.event_id;
      if (frame.type === 'hello') {
        greeted = true;
        if (reconnecting) this.reconnectUrl = null; // spent: the server sends the next one
        this.attempts = 0;
        this.startPings();
        this.onState('live');
      } else if (frame.type === 'reconnect_url' && typeof frame.url === 'string') {
        this.reconnectUrl = frame.url;
      } else if (frame.type === 'pong') {
        this.awaitingPong = false;
      } else if (frame.type === 'error' && frame.error?.code === 'resync_required') {
        resync = true;
        this.reconnectUrl = null; // its cursor is gone from the log too
      } else if (frame.type === 'error' && frame.error?.code === 'ratelimited') {
        this.retryAfterMs = 1000 * (Number(frame.error.retry_after) || 0);
      } else if (frame.type === 'goodbye') {
        this.drop();
        return;
      }
      this.onFrame(frame);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return; // replaced or closed on purpose
      this.ws = null;
      this.stopPings();
      if (reconnecting && !greeted && event.code !== CLOSE_BUSY) {
        // Refused (expired, or not the latest), which a browser cannot tell from a network
        // failure (both close 1006): rtm.connect next time.
        this.reconnectUrl = null;
      }
      if (resync || event.code === CLOSE_RESYNC) {
        this.resyncing = true;
        this.reconnectUrl = null;
        this.onState('resyncing');
        this.onResync();
      } else {
        this.scheduleReconnect();
      }
    };
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify({ id: this.nextId++, ...frame }));
    return true;
  }

  get live() {
    return Boolean(this.ws && this.ws.readyState === WebSocket.OPEN);
  }

  startPings() {
    this.stopPings();
    this.pinger = setInterval(() => {
      if (this.awaitingPong) {
        this.drop(); // no answer to the last ping: the socket is dead
        return;
      }
      this.awaitingPong = this.send({ type: 'ping' });
    }, PING_EVERY_MS);
  }

  stopPings() {
    clearInterval(this.pinger);
    this.pinger = null;
    this.awaitingPong = false;
  }

  // Close the socket on purpose, without reconnecting.
  close() {
    const ws = this.ws;
    this.ws = null;
    this.stopPings();
    if (ws) ws.close();
  }

  // Lose the socket and come back with backoff (offline, goodbye, dead socket).
  drop() {
    const hadSocket = Boolean(this.ws);
    this.close();
    if (hadSocket || !this.timer) this.scheduleReconnect();
  }

  scheduleReconnect() {
    clearTimeout(this.timer);
    this.onState('reconnecting');
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempts);
    this.attempts += 1;
    // Jitter spreads a storm; a refusal's retry_after (already jittered) is a floor.
    const delay = Math.max(this.retryAfterMs, ceiling / 2 + Math.random() * (ceiling / 2));
    this.retryAfterMs = 0;
    this.timer = setTimeout(() => this.reconnect(), delay);
  }

  reconnectNow() {
    if (this.live || this.resyncing) return;
    clearTimeout(this.timer);
    this.attempts = 0;
    this.reconnect();
  }

  async reconnect() {
    this.timer = null;
    if (this.live || this.resyncing) return;
    // Kept until the server greets or refuses it (see open): a busy refusal leaves it good
    // for the next try.
    const reconnectUrl = this.reconnectUrl;
    try {
      if (reconnectUrl) this.open(reconnectUrl, true);
      else this.open(await this.connectUrl());
    } catch (error) {
      this.scheduleReconnect();
    }
  }
}
