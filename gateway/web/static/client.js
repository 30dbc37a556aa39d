export const VERSION = '1.0.0';

// OrderPush JavaScript client: an ES module with no dependencies, served by
// every gateway at /client.js (import it as /client.js?v=<VERSION>).
//
//   import { connect } from 'https://gateway.example/client.js?v=1.0.0';
//   const client = connect({ token, apiURL: 'https://gateway.example/api' });
//   client.on('order', (f) => show(f.data.order, f.data.orderSum));
//
// It holds the merchant stream of PROTOCOL.md ("Merchant socket", "Other
// transports", "Receipts and attention") and keeps its delivery guarantee
// for the page: every event once, in seq order, across reconnects.
//   - WebSocket (/ws) first; when WebSocket fails where plain HTTP works
//     (a proxy that drops upgrades), Server-Sent Events (/sse).
//   - Reconnects resume with ?since=<last seq>; `resync` (and a hello whose
//     seq went backwards) means "replace your state" and is passed on.
//   - Close codes: 1001 reconnect at once (any replica); 1008 ask
//     getToken() for a new token; 1013 back off; anything else reconnects
//     with exponential backoff and full jitter.
//   - A frame whose seq is not above the last one is dropped (deduplicated).
//   - `ack` after handling frames (at most every ackInterval ms) and after
//     every hello; seen() and process() for the person's actions.
//   - shareTabs: one tab of a browser (elected with navigator.locks) holds
//     the connection and shares frames with the others (BroadcastChannel);
//     when it closes, another takes over and resumes with since.

const CLOSE_GOING_AWAY = 1001;
const CLOSE_POLICY = 1008;
const CLOSE_TRY_AGAIN = 1013;

const DEFAULTS = Object.freeze({
  transports: ['ws', 'sse'],
  batch: false,
  since: null,
  shareTabs: false,
  backoffBase: 500, // ms: first step; it doubles per failed attempt
  backoffCap: 30000, // ms
  fallbackAfter: 2, // failed WebSocket attempts before SSE is tried
  retryWebSocketAfter: 300000, // ms on SSE before a reconnect tries WebSocket again
  ackInterval: 250, // ms between acks over WebSocket
  httpAckInterval: 1000, // ms between acks over HTTP (SSE, follower tabs)
  pingInterval: 20000, // ms: application ping over WebSocket
  pongTimeout: 10000, // ms without any frame after a ping: the socket is dead
  sseIdleTimeout: 45000, // ms without a byte on SSE (heartbeats come every 15 s)
  ringSize: 1000, // frames a tab keeps to replay to other tabs
  random: Math.random,
});

// connect makes a Client and starts it.
export function connect(options) {
  const c = new Client(options);
  c.start();
  return c;
}

// Client is one merchant stream for a page. Events (client.on(name, fn)):
//   'hello', 'resync', 'order', 'order.processed', 'order.seen', 'notice',
//   'error' (an error frame), 'pong' (frames, as objects);
//   'event' (every sequenced frame, after deduplication);
//   'duplicate' (a dropped frame); 'gap' (a seq was skipped: reload state);
//   'state' ({state, transport, role, attempt, retryIn, code, reason, node});
//   'role' ('solo' | 'leader' | 'follower'); 'auth' ({status, code, message}:
//   the token was refused and getToken gave no new one; the client stops).
export class Client {
  constructor(options = {}) {
    const o = { ...DEFAULTS, ...options };
    if (typeof o.token !== 'string' || !o.token) throw new TypeError('orderpush client: token is required');
    const base = new URL(o.url || new URL('.', import.meta.url).href);
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    this.opts = o;
    this.token = o.token;
    this.wsBase = o.wsURL ? new URL(o.wsURL, base) : wsForm(new URL('ws', base));
    this.sseBase = o.sseURL ? new URL(o.sseURL, base) : new URL('sse', base);
    this.apiURL = o.apiURL ? String(new URL(o.apiURL, location.href)).replace(/\/+$/, '') : '';
    this.merchantId = subject(this.token);

    this.seq = Number.isInteger(o.since) && o.since >= 0 ? o.since : null; // last event applied
    this.orderSum = null;
    this.info = { merchantId: this.merchantId, node: '', connId: '' };
    this.role = 'solo';
    this.transport = o.transports[0] === 'sse' ? 'sse' : 'ws';
    this.stats = { frames: 0, events: 0, duplicates: 0, reconnects: 0, acks: 0 };

    this._handlers = new Map();
    this._state = { state: 'idle' };
    this._closed = false;
    this._conn = null; // the open transport: {kind, send(frame), close()}
    this._gen = 0; // connection generation: callbacks of older ones are ignored
    this._attempt = 0;
    this._liveAt = 0;
    this._wsFailures = 0;
    this._sseFailures = 0;
    this._retryTimer = 0;
    this._retryAt = 0;
    this._ackWant = 0;
    this._ackSent = 0;
    this._ackAt = 0;
    this._ackTimer = 0;
    this._pendingSeen = new Set();
    this._ring = [];
    this._channel = null;
    this._lockAbort = null;
    this._releaseLock = null;
    this._replayWait = 0;
    this._tabId = Math.random().toString(36).slice(2);
    this._onOnline = () => this.reconnectNow();
    this._onVisible = () => { if (!document.hidden) this.reconnectNow(); };
  }

  // on subscribes fn to an event; it returns the function that unsubscribes.
  on(name, fn) {
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(fn);
    return () => this._handlers.get(name).delete(fn);
  }

  get state() { return { ...this._state }; }

  // holdsConnection is true in the tab that holds the socket (always, without
  // shareTabs): the one that should make sounds.
  get holdsConnection() { return this.role !== 'follower'; }

  start() {
    if (typeof window !== 'undefined') {
      window.addEventListener('online', this._onOnline);
      document.addEventListener('visibilitychange', this._onVisible);
    }
    const shared = this.opts.shareTabs && typeof navigator !== 'undefined' && navigator.locks &&
      typeof BroadcastChannel !== 'undefined';
    if (!shared) { this._setRole('solo'); this._connect(); return; }
    const name = this.opts.lockName || `orderpush:${this.wsBase.origin}${this.wsBase.pathname}:${this.merchantId}`;
    this._channel = new BroadcastChannel(name);
    this._channel.onmessage = (e) => this._onTabMessage(e.data || {});
    this._setRole('follower');
    this._setState({ state: 'connecting', transport: 'tab' });
    this._post({ t: 'hi', from: this._tabId });
    this._lockAbort = new AbortController();
    navigator.locks.request(name, { signal: this._lockAbort.signal }, () => {
      if (this._closed) return undefined;
      this._setRole('leader');
      this._replayWait = 0;
      this._connect();
      // Held until close() or the tab goes away (the browser releases it).
      return new Promise((resolve) => { this._releaseLock = resolve; });
    }).catch(() => { /* aborted by close() */ });
  }

  // close ends the client for good: the socket, the timers, the tab role.
  close() {
    if (this._closed) return;
    this._closed = true;
    this._flushAck();
    this._drop();
    clearTimeout(this._ackTimer);
    if (this._lockAbort) this._lockAbort.abort();
    if (this._releaseLock) this._releaseLock();
    if (this._channel) this._channel.close();
    if (typeof window !== 'undefined') {
      window.removeEventListener('online', this._onOnline);
      document.removeEventListener('visibilitychange', this._onVisible);
    }
    this._setState({ state: 'closed' });
  }

  // reconnectNow skips a pending backoff (the network came back, the page
  // became visible).
  reconnectNow() {
    if (this._closed || this._conn || !this._retryTimer || this.role === 'follower') return;
    this._attempt = 0;
    this._connect();
  }

  // seen tells the server a person has looked at the order (PROTOCOL.md,
  // "Receipts and attention"): a frame on the socket, else the order API's
  // HTTP twin (apiURL), else it is sent when the socket is back.
  seen(orderNo) {
    orderNo = String(orderNo);
    if (this._conn && this._conn.kind === 'ws') {
      this._conn.send({ event: 'seen', data: { orderNo } });
      return Promise.resolve();
    }
    if (this.apiURL) return this._http('POST', `/orders/${encodeURIComponent(orderNo)}/seen`);
    if (this.role === 'follower') { this._post({ t: 'send', frame: { event: 'seen', data: { orderNo } } }); return Promise.resolve(); }
    this._pendingSeen.add(orderNo);
    return Promise.resolve();
  }

  // process marks the order processed. With apiURL it calls the order API
  // and resolves with the order (or rejects with {status, code, message});
  // without, it sends the frame: success shows as `order.processed`, a
  // refusal as an `error` frame.
  process(orderNo) {
    orderNo = String(orderNo);
    if (this.apiURL) return this._http('POST', `/orders/${encodeURIComponent(orderNo)}/process`);
    const frame = { event: 'process', data: { orderNo } };
    if (this._conn && this._conn.kind === 'ws') { this._conn.send(frame); return Promise.resolve(); }
    if (this.role === 'follower') { this._post({ t: 'send', frame }); return Promise.resolve(); }
    return Promise.reject(Object.assign(new Error('not connected'), { status: 0, code: 'unavailable' }));
  }

  // setToken replaces the token for the next connection and HTTP call.
  setToken(token) {
    if (typeof token === 'string' && token) this.token = token;
  }

  // ---- events ----------------------------------------------------------------

  _emit(name, value) {
    const hs = this._handlers.get(name);
    if (!hs) return;
    for (const fn of [...hs]) {
      try { fn(value); } catch (err) { setTimeout(() => { throw err; }); } // report, keep going
    }
  }

  _setState(patch) {
    this._state = { ...this._state, ...patch, role: this.role, transport: patch.transport || this._state.transport };
    this._emit('state', this.state);
    if (this.role === 'leader') this._post({ t: 'state', s: this._state });
  }

  _setRole(role) {
    if (this.role === role) return;
    this.role = role;
    this._emit('role', role);
  }

  // ---- frames ------------------------------------------------------------------

  // _apply handles one frame from the connection or, in a follower tab,
  // from the leader. It returns false when the frame was a duplicate.
  _apply(f, fromLeader) {
    if (!f || typeof f !== 'object' || typeof f.event !== 'string') return true;
    this.stats.frames++;
    const d = f.data && typeof f.data === 'object' ? f.data : {};
    if (f.event === 'hello') return this._hello(f, d, fromLeader);
    if (f.event === 'resync') { this._resync(f, d); return true; }
    if (f.seq === undefined || f.seq === null) {
      this._emit(f.event, f);
      if (this.role === 'leader') this._post({ t: 'frame', f });
      return true;
    }
    const seq = Number(f.seq);
    if (!Number.isInteger(seq) || seq <= 0) return true;
    if (this.seq !== null && seq <= this.seq) {
      this.stats.duplicates++;
      this._emit('duplicate', f);
      return false;
    }
    if (this.seq !== null && seq > this.seq + 1) {
      if (fromLeader) { this._askReplay(); return true; } // the leader fills it
      this._emit('gap', { from: this.seq, to: seq }); // PROTOCOL.md says it never happens on a socket
    }
    this.seq = seq;
    if (typeof d.orderSum === 'number') this.orderSum = d.orderSum;
    this._ring.push(f);
    if (this._ring.length > this.opts.ringSize) this._ring.splice(0, this._ring.length - this.opts.ringSize);
    this.stats.events++;
    this._emit('event', f);
    this._emit(f.event, f);
    if (this.role === 'leader') this._post({ t: 'frame', f });
    if (!fromLeader) this._ackLater();
    return true;
  }

  _hello(f, d, fromLeader) {
    const seq = Number(d.seq) || 0;
    this.info = { merchantId: d.merchantId || this.merchantId, node: d.node || '', connId: d.connId || '' };
    if (typeof d.merchantId === 'string' && d.merchantId) this.merchantId = d.merchantId;
    if (this.seq !== null && seq < this.seq) {
      // The merchant's stream went backwards (its data was reset): what we
      // hold is wrong; start over as on resync.
      this._resync({ event: 'resync', data: d }, d);
      return true;
    }
    const fresh = this.seq === null;
    const missed = fresh ? 0 : seq - this.seq;
    if (fresh) { this.seq = seq; this.orderSum = typeof d.orderSum === 'number' ? d.orderSum : null; this._ring = []; }
    else if (missed === 0 && typeof d.orderSum === 'number') this.orderSum = d.orderSum;
    if (!fromLeader) {
      this._attempt = 0;
      this._liveAt = Date.now();
      if (this._conn && this._conn.kind === 'ws') this._wsFailures = 0;
      if (this._conn && this._conn.kind === 'sse') this._sseFailures = 0;
      this._setState({ state: 'live', node: this.info.node, attempt: 0, retryIn: 0, code: 0, reason: '' });
    }
    this._emit('hello', { ...f, fresh, missed, fromTab: !!fromLeader });
    if (this.role === 'leader') this._post({ t: 'frame', f });
    if (!fromLeader) {
      // PROTOCOL.md: ack again after every hello, so a receipt lost with a
      // crashed gateway is recovered. A fresh client took its state as of
      // hello.seq; a resuming one holds everything up to its own seq.
      this._ackNow();
      this._flushSeen();
    } else if (missed > 0) {
      this._askReplay(); // a new leader resumed from further back than this tab
    }
    return true;
  }

  _resync(f, d) {
    this.seq = Number(d.seq) || 0;
    this.orderSum = typeof d.orderSum === 'number' ? d.orderSum : null;
    this.info = { merchantId: d.merchantId || this.merchantId, node: d.node || this.info.node, connId: d.connId || this.info.connId };
    this._ring = [];
    this._replayWait = 0;
    this._ackWant = 0; // the stream was replaced: acks start over from its seq
    this._ackSent = 0;
    this._emit('resync', f);
    if (this.role === 'leader') this._post({ t: 'frame', f });
    if (this.role !== 'follower') {
      this._setState({ state: 'live', node: this.info.node });
      this._ackNow();
    }
  }

  // ---- receipts ------------------------------------------------------------

  _ackLater() {
    this._ackWant = Math.max(this._ackWant, this.seq || 0);
    if (this._ackTimer) return;
    const every = this._conn && this._conn.kind === 'ws' ? this.opts.ackInterval : this.opts.httpAckInterval;
    // A timer even when due now: it runs after the page's handlers of this
    // message (and of the rest of a batch) ran, so an ack means "handled".
    this._ackTimer = setTimeout(() => this._flushAck(), Math.max(0, this._ackAt + every - Date.now()));
  }

  _ackNow() {
    this._ackWant = Math.max(this._ackWant, this.seq || 0);
    clearTimeout(this._ackTimer);
    this._ackTimer = setTimeout(() => this._flushAck(true), 0);
  }

  // _flushAck sends the pending ack; force sends it even when it repeats the
  // last one (after hello: the gateway that got it may have crashed).
  _flushAck(force = false) {
    clearTimeout(this._ackTimer);
    this._ackTimer = 0;
    const seq = this._ackWant;
    if (seq <= 0 || this.role === 'follower') return;
    if (seq === this._ackSent && !force) return;
    this._ackAt = Date.now();
    this._ackSent = seq;
    this.stats.acks++;
    if (this._conn && this._conn.kind === 'ws') { this._conn.send({ event: 'ack', seq }); return; }
    if (this.apiURL && this.merchantId) {
      this._http('POST', `/merchants/${encodeURIComponent(this.merchantId)}/ack`, { seq }).catch(() => {
        if (this._ackSent === seq) this._ackSent = 0; // retried with the next one
      });
    }
  }

  _flushSeen() {
    if (!this._conn || this._conn.kind !== 'ws') return;
    for (const no of this._pendingSeen) this._conn.send({ event: 'seen', data: { orderNo: no } });
    this._pendingSeen.clear();
  }

  async _http(method, path, body) {
    let r;
    try {
      r = await fetch(this.apiURL + path, {
        method,
        headers: { Authorization: `Bearer ${this.token}`, Accept: 'application/json', ...(body ? { 'Content-Type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        cache: 'no-store',
      });
    } catch {
      throw Object.assign(new Error('the order API cannot be reached'), { status: 0, code: 'unavailable' });
    }
    const text = await r.text().catch(() => '');
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { json = null; }
    if (!r.ok) {
      const e = (json && json.error) || {};
      throw Object.assign(new Error(e.message || `HTTP ${r.status}`), { status: r.status, code: e.code || '' });
    }
    return json;
  }

  // ---- connections -----------------------------------------------------------

  _connect() {
    if (this._closed || this.role === 'follower') return;
    this._drop();
    clearTimeout(this._retryTimer);
    this._retryTimer = 0;
    const gen = ++this._gen;
    const useSSE = this.opts.transports.includes('sse') &&
      (!this.opts.transports.includes('ws') || this._wsFailures >= this.opts.fallbackAfter);
    this.transport = useSSE ? 'sse' : 'ws';
    this._setState({ state: this.seq === null ? 'connecting' : 'reconnecting', transport: this.transport, attempt: this._attempt, retryIn: 0 });
    if (useSSE) this._openSSE(gen); else this._openWS(gen);
  }

  // _drop forgets the current connection without waiting for its close
  // handshake (a dead TCP connection can take a minute to report close).
  _drop() {
    const c = this._conn;
    this._conn = null;
    this._gen++;
    if (c) c.close();
  }

  _url(base) {
    const u = new URL(base);
    u.searchParams.set('token', this.token);
    if (this.seq !== null) u.searchParams.set('since', String(this.seq));
    if (base === this.wsBase && this.opts.batch) u.searchParams.set('batch', '1');
    return u;
  }

  _openWS(gen) {
    let ws;
    try { ws = new WebSocket(this._url(this.wsBase).href); } catch { this._failed(gen, 'ws', 0, false, false); return; }
    let opened = false;
    let helloSeen = false;
    let ping = 0;
    let pong = 0;
    const conn = {
      kind: 'ws',
      send: (frame) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame)); },
      close: () => {
        clearInterval(ping); clearTimeout(pong);
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        try { ws.close(1000); } catch { /* already closed */ }
      },
    };
    this._conn = conn;
    ws.onopen = () => {
      opened = true;
      // Browsers hide WebSocket pings: a half-open connection (sleep, NAT
      // timeout) is found with our own ping and a deadline for any frame.
      ping = setInterval(() => {
        conn.send({ event: 'ping' });
        clearTimeout(pong);
        pong = setTimeout(() => { if (gen === this._gen) { this._drop(); this._retry(0, 'no answer to ping'); } }, this.opts.pongTimeout);
      }, this.opts.pingInterval);
    };
    ws.onmessage = (e) => {
      if (gen !== this._gen) return;
      clearTimeout(pong);
      for (const line of String(e.data).split('\n')) {
        if (!line) continue;
        let f;
        try { f = JSON.parse(line); } catch { continue; }
        if (f && f.event === 'hello') helloSeen = true;
        this._apply(f, false);
        if (gen !== this._gen) return; // a handler closed or replaced the connection
      }
    };
    ws.onclose = (e) => {
      if (gen !== this._gen) return;
      clearInterval(ping); clearTimeout(pong);
      this._conn = null;
      this._failed(gen, 'ws', e.code, opened, helloSeen);
    };
  }

  // _openSSE reads /sse with fetch (so the status of a refusal is visible
  // and the client, not the browser, decides when to reconnect) and parses
  // the event stream (one frame per event, `id:` = seq).
  _openSSE(gen) {
    const ctl = new AbortController();
    let idle = 0;
    // While WebSocket is only a fallback away, try it again now and then
    // (the network that blocked it may have changed).
    const retryWS = this.opts.transports.includes('ws') ? setTimeout(() => {
      if (gen !== this._gen) return;
      this._drop();
      this._wsFailures = this.opts.fallbackAfter - 1; // one failure brings SSE back
      this._connect();
    }, this.opts.retryWebSocketAfter) : 0;
    const conn = {
      kind: 'sse',
      send: () => {},
      close: () => { clearTimeout(idle); clearTimeout(retryWS); ctl.abort(); },
    };
    this._conn = conn;
    const watchdog = () => {
      clearTimeout(idle);
      idle = setTimeout(() => { if (gen === this._gen) { this._drop(); this._retry(0, 'stream silent'); } }, this.opts.sseIdleTimeout);
    };
    let helloSeen = false;
    (async () => {
      let res;
      try {
        res = await fetch(this._url(this.sseBase).href, { cache: 'no-store', signal: ctl.signal, headers: { Accept: 'text/event-stream' } });
      } catch {
        if (gen === this._gen) { this._conn = null; this._failed(gen, 'sse', 0, false, false); }
        return;
      }
      if (gen !== this._gen) { ctl.abort(); return; }
      if (!res.ok || !res.body) {
        this._conn = null;
        await this._refused(gen, res, 'sse');
        return;
      }
      watchdog();
      const parser = new SSEParser((f) => {
        if (gen !== this._gen) return;
        if (f.event === 'hello') helloSeen = true;
        this._apply(f, false);
      });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done || gen !== this._gen) break;
          watchdog();
          parser.push(value);
        }
      } catch { /* aborted or the network failed */ }
      clearTimeout(idle);
      if (gen !== this._gen) return;
      this._conn = null;
      // The server ends the stream on drain and on token expiry; either way
      // resume at once (a refusal then shows as an HTTP status).
      this._failed(gen, 'sse', helloSeen ? CLOSE_GOING_AWAY : 0, true, helloSeen);
    })();
  }

  // _failed decides what follows a connection that ended.
  async _failed(gen, kind, code, opened, helloSeen) {
    if (this._closed || gen !== this._gen) return;
    if (kind === 'ws' && !opened) {
      // A refused upgrade is invisible to WebSocket code; ask the same URL
      // over plain HTTP, which answers 401/403/429/503 with the reason
      // before any upgrade (PROTOCOL.md, "Merchant socket").
      let res = null;
      try {
        const u = this._url(this.wsBase);
        u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
        res = await fetch(u.href, { cache: 'no-store' });
      } catch { res = null; }
      if (this._closed || gen !== this._gen || this._conn) return;
      if (res && [400, 401, 403, 429, 503].includes(res.status)) { await this._refused(gen, res, 'ws'); return; }
    }
    if (kind === 'sse' && !helloSeen) this._sseFailed();
    if (kind === 'ws' && !helloSeen) {
      this._wsFailures++;
      if (this._wsFailures >= this.opts.fallbackAfter && this.opts.transports.includes('sse')) {
        this._emit('fallback', { from: 'ws', to: 'sse' });
        this._retry(0, 'WebSocket unavailable, using SSE', 0);
        return;
      }
    }
    if (code === CLOSE_POLICY) {
      // 1008 is token expiry, or a flood of client frames (PROTOCOL.md,
      // "Limits and hostile clients"): a token with time left is kept and
      // the client backs off instead.
      if (expiresIn(this.token) > 5000) { this._attempt = Math.max(this._attempt, 2); this._retry(code, 'policy (too many frames)'); return; }
      await this._renewToken(gen, 'expired', { status: 0, code: 'token_expired', message: 'close 1008' });
      return;
    }
    // At once, unless the connection lived under a second (then a replica
    // that keeps ending streams at once is not hammered).
    if (code === CLOSE_GOING_AWAY && helloSeen) { this._retry(code, 'replica went away', Date.now() - this._liveAt < 1000 ? undefined : 0); return; }
    if (code === CLOSE_TRY_AGAIN) { this._attempt = Math.max(this._attempt, 2); this._retry(code, 'server busy'); return; }
    this._retry(code, opened ? 'connection lost' : 'cannot connect');
  }

  // _sseFailed counts an SSE attempt that brought no hello; after as many
  // as made WebSocket give way, WebSocket gets one more try (neither is
  // known to work: alternate rather than insist on one).
  _sseFailed() {
    this._sseFailures++;
    if (this._sseFailures >= this.opts.fallbackAfter && this.opts.transports.includes('ws')) {
      this._sseFailures = 0;
      this._wsFailures = this.opts.fallbackAfter - 1;
    }
  }

  // _refused handles an HTTP refusal of /ws or /sse.
  async _refused(gen, res, kind) {
    const body = await res.json().catch(() => null);
    if (this._closed || gen !== this._gen) return;
    const e = (body && body.error) || {};
    const why = { status: res.status, code: e.code || '', message: e.message || `HTTP ${res.status}` };
    if (res.status === 401) { await this._renewToken(gen, 'unauthorized', why); return; }
    if (res.status === 403) { this._stopAuth(why); return; }
    if (res.status === 400 && e.code === 'invalid_since') { this.seq = null; this._retry(0, 'since refused', 0); return; }
    if (kind === 'sse' && res.status !== 429 && res.status !== 503) {
      this._sseFailed();
      this._retry(0, `SSE refused (${res.status})`);
      return;
    }
    const after = Number(res.headers.get('Retry-After'));
    this._retry(0, `${why.code || 'refused'} (${res.status})`, undefined, Number.isFinite(after) && after > 0 ? after * 1000 : 0);
  }

  async _renewToken(gen, reason, why) {
    const get = this.opts.getToken;
    let t = '';
    if (typeof get === 'function') {
      this._setState({ state: 'reconnecting', reason: `token ${reason}`, code: why.status ? 0 : CLOSE_POLICY });
      try { t = await get(reason); } catch { t = ''; }
    }
    if (this._closed || (gen !== this._gen && this._conn)) return;
    if (typeof t === 'string' && t && t !== this.token) {
      this.token = t;
      this._retry(0, 'new token', 0);
      return;
    }
    this._stopAuth({ ...why, reason });
  }

  _stopAuth(why) {
    this._drop();
    clearTimeout(this._retryTimer);
    this._retryTimer = 0;
    this._setState({ state: 'unauthorized', reason: why.message || '', code: why.status });
    this._emit('auth', why);
  }

  // _retry schedules the next connection: after delay when given, else
  // exponential backoff with full jitter (a random wait between 0 and the
  // step, the step doubling from backoffBase to backoffCap), at least
  // minDelay (a Retry-After).
  _retry(code, reason, delay, minDelay = 0) {
    if (this._closed || this.role === 'follower') return;
    clearTimeout(this._retryTimer);
    if (delay === undefined) {
      const step = Math.min(this.opts.backoffCap, this.opts.backoffBase * 2 ** this._attempt);
      delay = Math.round(this.opts.random() * step);
      this._attempt++;
    }
    delay = Math.max(delay, minDelay);
    this.stats.reconnects++;
    this._retryAt = Date.now() + delay;
    this._setState({ state: 'reconnecting', code, reason, attempt: this._attempt, retryIn: delay, retryAt: this._retryAt });
    this._retryTimer = setTimeout(() => { this._retryTimer = 0; this._connect(); }, delay);
  }

  // ---- tabs ------------------------------------------------------------------

  _post(msg) {
    if (!this._channel) return;
    try { this._channel.postMessage(msg); } catch { /* closed */ }
  }

  _askReplay() {
    if (this._replayWait && Date.now() - this._replayWait < 2000) return;
    this._replayWait = Date.now();
    this._post({ t: 'replay', from: this._tabId, since: this.seq });
  }

  // _onTabMessage handles what other tabs of this browser say. The leader
  // answers; followers apply the leader's frames as if they came from a
  // socket of their own.
  _onTabMessage(m) {
    if (this._closed) return;
    if (this.role === 'leader') {
      switch (m.t) {
        case 'hi':
        case 'replay': this._answerReplay(m.from, m.t === 'hi' ? null : m.since); break;
        case 'send':
          if (m.frame && this._conn && this._conn.kind === 'ws') this._conn.send(m.frame);
          else if (m.frame && m.frame.event === 'seen') this.seen(m.frame.data && m.frame.data.orderNo);
          break;
        default: break;
      }
      return;
    }
    if (this.role !== 'follower') return;
    switch (m.t) {
      case 'frame': this._apply(m.f, true); break;
      case 'replayed':
        if (m.to !== this._tabId) break;
        this._replayWait = 0;
        if (m.resync) this._apply(m.resync, true);
        for (const f of m.frames || []) this._apply(f, true);
        break;
      case 'state': this._setState({ ...m.s, transport: 'tab', via: m.s.transport }); break;
      default: break;
    }
  }

  // _answerReplay sends a tab what it lacks: the frames after since from
  // the ring, or the current state as a resync (a new tab, or one too far
  // behind).
  _answerReplay(to, since) {
    if (this.seq === null) return;
    const snapshot = { event: since === null ? 'hello' : 'resync', data: { ...this.info, merchantId: this.merchantId, seq: this.seq, orderSum: this.orderSum } };
    this._post({ t: 'state', s: this._state });
    if (since === null || since > this.seq) { this._post({ t: 'replayed', to, resync: snapshot }); return; }
    const first = this._ring.length ? this._ring[0].seq : this.seq + 1;
    if (first > since + 1) { this._post({ t: 'replayed', to, resync: snapshot }); return; }
    this._post({ t: 'replayed', to, frames: this._ring.filter((f) => f.seq > since) });
  }
}

// SSEParser turns text/event-stream chunks into frames: one JSON frame per
// event's data (PROTOCOL.md, "Other transports"); comments, ids and
// unknown fields are skipped (the frame's own seq is the id).
export class SSEParser {
  constructor(onFrame) { this.onFrame = onFrame; this.buf = ''; this.data = []; }

  push(chunk) {
    this.buf += chunk;
    for (;;) {
      const i = this.buf.search(/\r\n|\r|\n/);
      if (i < 0) break;
      const nl = this.buf[i] === '\r' && this.buf[i + 1] === '\n' ? 2 : 1;
      if (this.buf[i] === '\r' && i + 1 === this.buf.length) break; // a CRLF split across chunks
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + nl);
      this.line(line);
    }
    if (this.buf.length > 1 << 20) this.buf = ''; // a line over 1 MiB is no frame of ours
  }

  line(line) {
    if (line === '') {
      if (this.data.length) {
        const text = this.data.join('\n');
        this.data = [];
        let f = null;
        try { f = JSON.parse(text); } catch { f = null; }
        if (f) this.onFrame(f);
      }
      return;
    }
    if (line[0] === ':') return;
    const c = line.indexOf(':');
    const field = c < 0 ? line : line.slice(0, c);
    let value = c < 0 ? '' : line.slice(c + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') this.data.push(value);
  }
}

// wsForm turns an http(s) URL into its ws(s) form.
function wsForm(u) {
  if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol === 'http:') u.protocol = 'ws:';
  return u;
}

// claims reads the token's payload (no verification: the server verifies).
function claims(token) {
  try {
    const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(Array.from(atob(b64), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
    const c = JSON.parse(json);
    return c && typeof c === 'object' ? c : {};
  } catch {
    return {};
  }
}

// subject is the token's sub, naming the tab lock and the HTTP ack path.
function subject(token) {
  const sub = claims(token).sub;
  return typeof sub === 'string' ? sub : '';
}

// expiresIn is how many ms the token has left (0 when expired or unknown).
function expiresIn(token) {
  const exp = claims(token).exp;
  return typeof exp === 'number' ? Math.max(0, exp * 1000 - Date.now()) : 0;
}
