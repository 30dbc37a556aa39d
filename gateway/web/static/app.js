// OrderPush merchant dashboard: plain JavaScript, no build step.
//
// It speaks the merchant socket of PROTOCOL.md ("Merchant socket") and the
// order API ("Order API"). What it relies on:
//   - every merchant event carries seq (1, 2, 3... per merchant) and
//     data.orderSum, so the count is taken from the newest frame and a frame
//     whose seq is not newer than the last one applied is a duplicate;
//   - reconnecting with ?since=<last seq> replays what was missed, and
//     `resync` means "replace your state": the list is then reloaded;
//   - close 1008 means the token expired; anything else is retried with
//     exponential backoff and jitter, through whatever replica the load
//     balancer picks.
'use strict';

(function () {
  const STORE_TOKEN = 'orderpush.token';
  const STORE_API = 'orderpush.api';
  const STORE_SOUND = 'orderpush.sound';
  const DEFAULT_API = '/api';
  const NEW_ORDER_MSG = '您收到一条新订单，赶快去处理吧';
  const NEW_ORDER_EN = 'New order received, please handle it soon.';
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 30000;
  const PING_EVERY_MS = 20000;
  const PONG_WAIT_MS = 10000;
  const PAGE_SIZE = 200;
  const MAX_PAGES = 10; // the list shows at most 2000 pending orders
  const MAX_TOASTS = 3;

  const $ = (id) => document.getElementById(id);
  const el = {
    signin: $('signin'), signinForm: $('signin-form'), tokenInput: $('token-input'),
    apiInput: $('api-input'), signinError: $('signin-error'), advanced: $('advanced'),
    dash: $('dash'), merchant: $('merchant'), signout: $('signout'), sound: $('sound'),
    conn: $('conn'), connText: $('conn-text'), sync: $('sync'),
    count: $('count'), node: $('node'), seq: $('seq'),
    orders: $('orders'), empty: $('empty'), listInfo: $('list-info'), listError: $('list-error'),
    dMerchant: $('d-merchant'), dConn: $('d-conn'), dApi: $('d-api'),
    apiForm: $('api-form'), apiEdit: $('api-edit'), toasts: $('toasts'),
  };

  // All mutable state of the page. seq is the last merchant event applied
  // (null until the first hello); orders holds the pending orders shown;
  // gone remembers orders seen processed, so a list response that raced
  // with an order.processed event never brings a processed row back.
  const st = {
    token: '', api: DEFAULT_API, merchantId: '', node: '', connId: '',
    seq: null, orderSum: null,
    orders: new Map(), rows: new Map(), gone: new Set(),
    ws: null, attempt: 0, retryTimer: 0, retryAt: 0, countdown: 0,
    pingTimer: 0, pongTimer: 0, listGen: 0, listRetry: 0, listLoading: false,
    syncTimer: 0, audio: null, soundOn: true, lastBeep: 0,
  };

  // ---- storage and sign-in -------------------------------------------------

  function load(key) { try { return localStorage.getItem(key) || ''; } catch { return ''; } }
  function save(key, v) { try { v ? localStorage.setItem(key, v) : localStorage.removeItem(key); } catch { /* private mode */ } }

  // claims decodes a JWT payload for early feedback only; the gateway and the
  // order API verify the token.
  function claims(token) {
    const parts = token.split('.');
    if (parts.length !== 3) throw new Error('This is not a JWT (it should have three dot-separated parts).');
    try {
      const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
      const json = decodeURIComponent(Array.from(atob(b64), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
      return JSON.parse(json);
    } catch {
      throw new Error('The token payload cannot be read.');
    }
  }

  function checkToken(token) {
    const c = claims(token);
    if (c.role !== 'merchant') throw new Error(`This is a ${c.role || 'role-less'} token; the dashboard needs a merchant token.`);
    if (typeof c.exp === 'number' && c.exp * 1000 < Date.now()) throw new Error('This token has expired; get a new one.');
    return c;
  }

  function normaliseAPI(s) {
    s = (s || '').trim().replace(/\/+$/, '');
    return s || DEFAULT_API;
  }

  function showSignIn(message) {
    disconnect();
    el.dash.hidden = true; el.signout.hidden = true; el.merchant.hidden = true; el.sound.hidden = true;
    el.signin.hidden = false;
    el.apiInput.value = st.api === DEFAULT_API ? '' : st.api;
    el.signinError.textContent = message || '';
    el.signinError.hidden = !message;
    document.title = 'OrderPush · Merchant dashboard';
    el.tokenInput.focus();
  }

  function signIn(token) {
    st.token = token;
    save(STORE_TOKEN, token);
    resetMerchantState();
    el.signin.hidden = true; el.dash.hidden = false; el.signout.hidden = false; el.sound.hidden = false;
    el.dApi.textContent = st.api; el.apiEdit.value = st.api;
    render();
    connect();
  }

  function signOut(message) {
    save(STORE_TOKEN, '');
    st.token = '';
    resetMerchantState();
    showSignIn(message);
  }

  function resetMerchantState() {
    st.merchantId = ''; st.node = ''; st.connId = ''; st.seq = null; st.orderSum = null;
    st.orders.clear(); st.gone.clear(); st.listGen++; st.listLoading = false;
    clearTimeout(st.listRetry);
    for (const li of st.rows.values()) li.remove();
    st.rows.clear();
    st.attempt = 0;
  }

  // ---- socket -------------------------------------------------------------

  function socketURL() {
    // Relative to the page, so a dashboard served under a path prefix finds
    // the socket beside it; resolving drops the page's own query.
    const u = new URL('ws', location.href);
    u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    u.searchParams.set('token', st.token);
    if (st.seq !== null) u.searchParams.set('since', String(st.seq));
    return u.toString();
  }

  function connect() {
    if (st.ws) disconnect();
    clearTimeout(st.retryTimer); clearInterval(st.countdown);
    if (!st.token) return;
    setConn('connecting', st.seq === null ? 'Connecting…' : 'Reconnecting…');
    const ws = new WebSocket(socketURL());
    let opened = false;
    st.ws = ws;
    ws.onopen = () => { opened = true; startKeepalive(ws); };
    ws.onmessage = (e) => {
      if (ws !== st.ws) return;
      heard();
      for (const line of String(e.data).split('\n')) {
        if (!line) continue;
        let f;
        try { f = JSON.parse(line); } catch { continue; }
        onFrame(f);
      }
    };
    ws.onclose = (e) => {
      if (ws !== st.ws) return;
      st.ws = null;
      stopKeepalive();
      onClosed(e.code, opened);
    };
  }

  // disconnect drops the socket without waiting for its close handshake (a
  // dead TCP connection can take a minute to report close).
  function disconnect() {
    clearTimeout(st.retryTimer); clearInterval(st.countdown);
    stopKeepalive();
    const ws = st.ws;
    st.ws = null;
    if (ws) { ws.onclose = null; ws.onmessage = null; try { ws.close(1000); } catch { /* already closed */ } }
  }

  async function onClosed(code, opened) {
    if (!st.token) return;
    if (code === 1008) { signOut('Your session has expired (close 1008). Sign in with a new token.'); return; }
    if (!opened) {
      // A refused upgrade is invisible to WebSocket code; ask the same URL
      // over plain HTTP, which answers 401/403 with the reason before any
      // upgrade (PROTOCOL.md, "Merchant socket").
      const why = await refusal();
      if (!st.token || st.ws) return; // signed out or reconnected meanwhile
      if (why) { signOut(why); return; }
    }
    scheduleReconnect(code);
  }

  async function refusal() {
    try {
      const r = await fetch(socketURL().replace(/^ws/, 'http'), { cache: 'no-store' });
      if (r.status !== 401 && r.status !== 403) return '';
      const body = await r.json().catch(() => ({}));
      const m = body && body.error && body.error.message;
      return `The gateway refused the connection (${r.status}${m ? ': ' + m : ''}).`;
    } catch {
      return '';
    }
  }

  function scheduleReconnect(code) {
    if (st.ws) return;
    clearTimeout(st.retryTimer); clearInterval(st.countdown);
    // Exponential backoff with "equal jitter": half the step is fixed, half
    // random, so replicas shedding many sockets at once (close 1001) do not
    // get them all back in the same instant.
    const step = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** st.attempt);
    const delay = Math.round(step / 2 + Math.random() * step / 2);
    st.attempt++;
    st.retryAt = Date.now() + delay;
    const why = code === 1001 ? 'replica went away' : code === 1013 ? 'server busy' : 'connection lost';
    const tick = () => {
      const s = Math.max(0, Math.ceil((st.retryAt - Date.now()) / 1000));
      setConn('reconnecting', `Reconnecting in ${s}s · ${why} (attempt ${st.attempt})`);
    };
    tick();
    st.countdown = setInterval(tick, 1000);
    st.retryTimer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (!st.token || st.ws) return;
    st.attempt = 0;
    connect();
  }

  // Keepalive at the application level: browsers hide WebSocket pings, so a
  // half-open connection (laptop sleep, NAT timeout) is found with our own
  // ping frame and a deadline for any answer.
  function startKeepalive(ws) {
    stopKeepalive();
    st.pingTimer = setInterval(() => {
      if (ws !== st.ws || ws.readyState !== WebSocket.OPEN) return;
      ws.send('{"event":"ping"}');
      clearTimeout(st.pongTimer);
      st.pongTimer = setTimeout(() => {
        if (ws !== st.ws) return;
        disconnect();
        scheduleReconnect(0);
      }, PONG_WAIT_MS);
    }, PING_EVERY_MS);
  }
  function heard() { clearTimeout(st.pongTimer); }
  function stopKeepalive() { clearInterval(st.pingTimer); clearTimeout(st.pongTimer); }

  // ---- frames ---------------------------------------------------------------

  function onFrame(f) {
    const d = f.data || {};
    switch (f.event) {
      case 'hello': onHello(d); break;
      case 'resync': onResync(d); break;
      case 'order':
      case 'order.processed': onEvent(f); break;
      case 'notice': toast('notice', String(d.msg || ''), 'Message for this dashboard'); break;
      case 'error': toast('error', `Error: ${d.message || d.code || 'unknown'}`, d.code || ''); break;
      default: break; // pong, and events of a later protocol version
    }
  }

  function onHello(d) {
    st.attempt = 0;
    st.merchantId = d.merchantId || st.merchantId;
    st.node = d.node || '';
    st.connId = d.connId || '';
    const seq = Number(d.seq) || 0;
    if (st.seq === null) {
      // First connection of this sign-in: take the state, load the list.
      st.seq = seq;
      st.orderSum = d.orderSum;
      loadPending();
    } else if (seq < st.seq) {
      // The merchant's stream went backwards (its data was reset): what we
      // hold is wrong, so start over as on resync.
      onResync(d);
      return;
    } else if (seq > st.seq) {
      // The replay of what we missed (since < seq <= hello.seq) follows; the
      // count is taken from those frames as they come.
      flag(`Resumed · ${seq - st.seq} missed event${seq - st.seq === 1 ? '' : 's'} replayed`);
    } else {
      st.orderSum = d.orderSum;
      flag('Reconnected · nothing missed');
    }
    setConn('live', `Live · replica ${st.node}`);
    render();
  }

  function onResync(d) {
    st.merchantId = d.merchantId || st.merchantId;
    st.node = d.node || st.node;
    st.connId = d.connId || st.connId;
    st.seq = Number(d.seq) || 0;
    st.orderSum = d.orderSum;
    st.orders.clear(); st.gone.clear();
    for (const li of st.rows.values()) li.remove();
    st.rows.clear();
    flag('Resynced · state reloaded');
    setConn('live', `Live · replica ${st.node}`);
    loadPending();
    render();
  }

  function onEvent(f) {
    const seq = Number(f.seq);
    if (!Number.isInteger(seq) || seq <= 0) return;
    if (st.seq !== null && seq <= st.seq) {
      bump('dups'); // a duplicate: already applied
      return;
    }
    const gap = st.seq !== null && seq > st.seq + 1;
    st.seq = seq;
    const d = f.data || {};
    if (typeof d.orderSum === 'number') st.orderSum = d.orderSum;
    const o = d.order;
    if (o && o.orderNo) {
      if (f.event === 'order') {
        if (o.status !== 'processed' && !st.gone.has(o.orderNo)) addOrder(o, true);
        toast('order', d.msg || NEW_ORDER_MSG, NEW_ORDER_EN, `${price(o.price)} · user ${o.userId || '?'} · ${o.orderNo}`);
        beep();
      } else {
        st.gone.add(o.orderNo);
        removeOrder(o.orderNo);
      }
    }
    // The socket never skips a seq (PROTOCOL.md); if it ever did, the count
    // is still right (it rides on the frame) and the list is reloaded.
    if (gap) loadPending();
    render();
  }

  // ---- pending orders ------------------------------------------------------

  async function loadPending() {
    if (!st.merchantId) return;
    const gen = ++st.listGen;
    clearTimeout(st.listRetry);
    st.listLoading = true;
    render();
    try {
      let before = '';
      for (let page = 0; page < MAX_PAGES; page++) {
        const q = new URLSearchParams({ status: 'pending', limit: String(PAGE_SIZE) });
        if (before) q.set('before', before);
        const body = await api('GET', `/merchants/${encodeURIComponent(st.merchantId)}/orders?${q}`);
        if (gen !== st.listGen) return; // superseded by a newer load
        for (const o of body.orders || []) {
          if (o.status === 'pending' && !st.gone.has(o.orderNo)) addOrder(o, false);
        }
        before = body.next || '';
        if (!before) break;
      }
      st.listLoading = false;
      el.listError.hidden = true;
      render();
    } catch (err) {
      if (gen !== st.listGen) return;
      st.listLoading = false;
      if (err.status === 401) { signOut(`The order API refused this token: ${err.message}`); return; }
      render();
      el.listError.textContent = `Could not load pending orders from ${st.api}: ${err.message}. Retrying…`;
      el.listError.hidden = false;
      st.listRetry = setTimeout(loadPending, 5000);
    }
  }

  async function api(method, path) {
    let r;
    try {
      r = await fetch(st.api + path, {
        method,
        headers: { Authorization: `Bearer ${st.token}`, Accept: 'application/json' },
        cache: 'no-store',
      });
    } catch (e) {
      throw Object.assign(new Error('the order API cannot be reached'), { status: 0 });
    }
    const body = await r.json().catch(() => null);
    if (!r.ok) {
      const m = (body && body.error && body.error.message) || `HTTP ${r.status}`;
      throw Object.assign(new Error(m), { status: r.status });
    }
    if (!body) throw Object.assign(new Error('the answer is not JSON'), { status: r.status });
    return body;
  }

  async function markProcessed(orderNo, button) {
    button.disabled = true;
    button.textContent = 'Processing…';
    try {
      await api('POST', `/orders/${encodeURIComponent(orderNo)}/process`);
      // The order.processed event updates the count for every open
      // dashboard; this row can go now.
      st.gone.add(orderNo);
      removeOrder(orderNo);
      render();
    } catch (err) {
      if (err.status === 401) { signOut(`The order API refused this token: ${err.message}`); return; }
      button.disabled = false;
      button.textContent = 'Mark processed';
      toast('error', `Could not mark ${orderNo} processed`, err.message);
    }
  }

  // orderKey sorts newest first: createdAt is ISO-8601 UTC, so strings compare.
  function orderKey(o) { return `${o.createdAt || ''}|${o.orderNo}`; }

  function addOrder(o, fresh) {
    if (st.orders.has(o.orderNo)) return; // never a duplicate row
    st.orders.set(o.orderNo, o);
    const li = rowFor(o, fresh);
    const key = orderKey(o);
    let next = null;
    for (const other of el.orders.children) {
      if (other.dataset.key < key) { next = other; break; }
    }
    el.orders.insertBefore(li, next);
    st.rows.set(o.orderNo, li);
  }

  function removeOrder(orderNo) {
    st.orders.delete(orderNo);
    const li = st.rows.get(orderNo);
    if (li) { li.remove(); st.rows.delete(orderNo); }
  }

  function rowFor(o, fresh) {
    const li = document.createElement('li');
    li.className = fresh ? 'order fresh' : 'order';
    li.dataset.orderNo = o.orderNo;
    li.dataset.key = orderKey(o);
    const main = document.createElement('div');
    main.className = 'order-main';
    const p = document.createElement('span');
    p.className = 'price';
    p.textContent = price(o.price);
    const no = document.createElement('span');
    no.className = 'order-no';
    no.textContent = o.orderNo;
    main.append(p, no);
    const meta = document.createElement('div');
    meta.className = 'order-meta';
    meta.textContent = [`user ${o.userId || '?'}`, o.date, time(o.createdAt)].filter(Boolean).join(' · ');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'process';
    b.textContent = 'Mark processed';
    b.addEventListener('click', () => markProcessed(o.orderNo, b));
    li.append(main, meta, b);
    return li;
  }

  function price(v) {
    const n = Number(v);
    return Number.isFinite(n) ? `¥${n.toFixed(2)}` : '¥–';
  }

  function time(iso) {
    const t = new Date(iso);
    if (Number.isNaN(t.getTime())) return '';
    return t.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  }

  // ---- view -----------------------------------------------------------------

  function render() {
    const sum = st.orderSum;
    el.count.textContent = typeof sum === 'number' ? String(sum) : '–';
    el.count.classList.toggle('zero', sum === 0);
    el.seq.textContent = st.seq === null ? '–' : String(st.seq);
    el.node.textContent = st.node || '–';
    el.merchant.textContent = st.merchantId ? `Merchant ${st.merchantId}` : '';
    el.merchant.hidden = !st.merchantId;
    el.dMerchant.textContent = st.merchantId || '–';
    el.dConn.textContent = st.connId ? `${st.connId} on ${st.node}` : '–';
    el.empty.hidden = st.orders.size > 0 || st.listLoading || typeof sum !== 'number';
    const shown = st.orders.size;
    el.listInfo.textContent = st.listLoading ? 'Loading…'
      : typeof sum === 'number' && sum > shown ? `${shown} shown of ${sum}` : '';
    document.title = typeof sum === 'number' && sum > 0 ? `(${sum}) OrderPush` : 'OrderPush · Merchant dashboard';
  }

  function setConn(state, text) {
    el.conn.dataset.state = state;
    el.connText.textContent = text;
  }

  // flag shows a short-lived tag next to the connection state (resumed,
  // resynced); data-last keeps the last one for tests and bug reports.
  function flag(text) {
    el.sync.textContent = text;
    el.sync.dataset.last = text;
    el.sync.hidden = false;
    clearTimeout(st.syncTimer);
    st.syncTimer = setTimeout(() => { el.sync.hidden = true; }, 8000);
  }

  // toast shows a short-lived message; lines after the title are smaller.
  function toast(kind, title, ...lines) {
    const t = document.createElement('div');
    t.className = `toast toast-${kind}`;
    t.setAttribute('role', 'status');
    const a = document.createElement('div');
    a.className = 'toast-title';
    a.textContent = title;
    t.append(a);
    for (const line of lines.filter(Boolean)) {
      const b = document.createElement('div');
      b.className = 'toast-line';
      b.textContent = line;
      t.append(b);
    }
    el.toasts.prepend(t);
    while (el.toasts.children.length > MAX_TOASTS) el.toasts.lastElementChild.remove();
    setTimeout(() => t.classList.add('out'), 6000);
    setTimeout(() => t.remove(), 6500);
    bump('toasts');
  }

  // bump counts things on <body data-*> for tests and for a look in devtools.
  function bump(name) {
    document.body.dataset[name] = String((Number(document.body.dataset[name]) || 0) + 1);
  }

  // ---- sound ----------------------------------------------------------------

  // The beep is synthesised (two short sine tones) so there is no asset to
  // fetch. Browsers start audio only after a user gesture, so the context is
  // created on the first click or key press.
  function unlockAudio() {
    if (st.audio || !st.soundOn) return;
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return;
    try { st.audio = new AC(); } catch { st.audio = null; }
  }

  function beep() {
    bump('beeps');
    if (!st.soundOn) return;
    const now = Date.now();
    if (now - st.lastBeep < 800) return; // a burst of orders gives one beep
    st.lastBeep = now;
    const ctx = st.audio;
    if (!ctx) return;
    if (ctx.state === 'suspended') ctx.resume().catch(() => {});
    const t0 = ctx.currentTime + 0.01;
    [[880, 0], [1320, 0.14]].forEach(([hz, at]) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = 'sine';
      osc.frequency.value = hz;
      gain.gain.setValueAtTime(0.0001, t0 + at);
      gain.gain.exponentialRampToValueAtTime(0.25, t0 + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + at + 0.12);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t0 + at);
      osc.stop(t0 + at + 0.13);
    });
  }

  function renderSound() {
    el.sound.setAttribute('aria-pressed', String(st.soundOn));
    el.sound.title = st.soundOn ? 'Sound on: click to mute' : 'Sound off: click to enable';
  }

  // ---- wiring -----------------------------------------------------------------

  function init() {
    const params = new URLSearchParams(location.search);
    const apiParam = params.get('api');
    if (apiParam !== null) save(STORE_API, apiParam.trim() ? normaliseAPI(apiParam) : '');
    st.api = normaliseAPI(load(STORE_API));
    st.soundOn = load(STORE_SOUND) !== 'off';
    renderSound();

    let token = (params.get('token') || '').trim();
    if (params.has('token') || params.has('api')) {
      // Keep the token out of the address bar, history and screenshots.
      params.delete('token'); params.delete('api');
      const q = params.toString();
      history.replaceState(null, '', location.pathname + (q ? `?${q}` : '') + location.hash);
    }
    if (!token) token = load(STORE_TOKEN);

    el.signinForm.addEventListener('submit', (e) => {
      e.preventDefault();
      unlockAudio();
      const t = el.tokenInput.value.trim();
      st.api = normaliseAPI(el.apiInput.value);
      save(STORE_API, st.api === DEFAULT_API ? '' : st.api);
      try { checkToken(t); } catch (err) { showSignIn(err.message); el.tokenInput.value = t; return; }
      el.tokenInput.value = '';
      signIn(t);
    });
    el.signout.addEventListener('click', () => signOut(''));
    el.sound.addEventListener('click', () => {
      st.soundOn = !st.soundOn;
      save(STORE_SOUND, st.soundOn ? '' : 'off');
      if (st.soundOn) { unlockAudio(); st.lastBeep = 0; beep(); }
      renderSound();
    });
    el.apiForm.addEventListener('submit', (e) => {
      e.preventDefault();
      st.api = normaliseAPI(el.apiEdit.value);
      save(STORE_API, st.api === DEFAULT_API ? '' : st.api);
      el.dApi.textContent = st.api; el.apiEdit.value = st.api;
      loadPending();
    });
    document.addEventListener('pointerdown', unlockAudio, { once: true });
    document.addEventListener('keydown', unlockAudio, { once: true });
    window.addEventListener('online', reconnectNow);
    window.addEventListener('offline', () => { if (!st.ws && st.token) setConn('offline', 'Offline · waiting for the network'); });
    document.addEventListener('visibilitychange', () => { if (!document.hidden) reconnectNow(); });

    if (!token) { showSignIn(''); return; }
    try { checkToken(token); } catch (err) { save(STORE_TOKEN, ''); showSignIn(err.message); return; }
    signIn(token);
  }

  // Read-only view of the state for tests and debugging.
  window.orderpush = Object.freeze({
    state: () => ({ seq: st.seq, orderSum: st.orderSum, node: st.node, merchantId: st.merchantId, orders: [...st.orders.keys()] }),
  });

  init();
})();
