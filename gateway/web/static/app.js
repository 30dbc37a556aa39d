// OrderPush merchant dashboard: plain JavaScript, no build step, on the
// JavaScript client the gateway serves (/client.js).
//
// The client holds the merchant stream (PROTOCOL.md, "Merchant socket",
// "Other transports"): reconnects with since, resync, close codes, backoff,
// deduplication by seq, acks; with shareTabs one tab of the browser holds
// the connection and the others get its frames. This page renders what it
// says and calls the order API for the list, "Mark processed" and "Got it"
// (PROTOCOL.md, "Order API", "Receipts and attention").
//
// The order API's address comes from the gateway (<meta name=orderpush-api>,
// DASHBOARD_API_URL), never from the link: a crafted link must not send the
// merchant's token elsewhere.
import { connect, VERSION } from './client.js?v=1.0.0';

const STORE_TOKEN = 'orderpush.token';
const STORE_SOUND = 'orderpush.sound';
const STORE_REPEAT = 'orderpush.repeat';
const LEGACY_API = 'orderpush.api'; // an older version kept a link's ?api= here
const DEFAULT_API = '/api';
const DEFAULT_REPEAT_S = 5;
const NEW_ORDER_MSG = '您收到一条新订单，赶快去处理吧';
const NEW_ORDER_EN = 'New order received, please handle it soon.';
const PAGE_SIZE = 200;
const MAX_PAGES = 10; // the list shows at most 2000 pending orders
const MAX_TOASTS = 3;
const CHIME_BURST_MS = 800; // orders closer than this give one chime

const $ = (id) => document.getElementById(id);
const el = {
  signin: $('signin'), signinForm: $('signin-form'), tokenInput: $('token-input'), signinError: $('signin-error'),
  dash: $('dash'), merchant: $('merchant'), signout: $('signout'), sound: $('sound'),
  conn: $('conn'), connText: $('conn-text'), sync: $('sync'),
  count: $('count'), node: $('node'), seq: $('seq'), unseen: $('unseen'), unseenN: $('unseen-n'),
  orders: $('orders'), empty: $('empty'), listInfo: $('list-info'), listError: $('list-error'),
  dMerchant: $('d-merchant'), dConn: $('d-conn'), dApi: $('d-api'), dClient: $('d-client'), dRole: $('d-role'),
  repeat: $('repeat'), toasts: $('toasts'),
};

// All mutable state of the page. orders holds the pending orders shown;
// gone remembers orders seen processed, so a list response that raced with
// an order.processed event never brings a processed row back; unseen holds
// the orders nobody has looked at yet (they keep the alert going).
const st = {
  api: apiBase(), token: '', client: null, offs: [],
  orders: new Map(), rows: new Map(), gone: new Set(), unseen: new Set(), seenSent: new Set(),
  listGen: 0, listRetry: 0, listLoading: false, syncTimer: 0, countdown: 0,
  audio: null, soundOn: true, repeatS: DEFAULT_REPEAT_S, lastChime: 0, alertTimer: 0,
};

// apiBase is the order API's base URL the gateway put in the page.
function apiBase() {
  const m = document.querySelector('meta[name="orderpush-api"]');
  const v = ((m && m.content) || '').trim().replace(/\/+$/, '');
  return v || DEFAULT_API;
}

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

function showSignIn(message) {
  stopClient();
  el.dash.hidden = true; el.signout.hidden = true; el.merchant.hidden = true; el.sound.hidden = true;
  el.signin.hidden = false;
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
  el.dApi.textContent = st.api;
  el.dClient.textContent = `client.js ${VERSION}`;
  render();
  startClient();
}

function signOut(message) {
  save(STORE_TOKEN, '');
  st.token = '';
  resetMerchantState();
  showSignIn(message);
}

function resetMerchantState() {
  stopClient();
  st.orders.clear(); st.gone.clear(); st.unseen.clear(); st.seenSent.clear();
  st.listGen++; st.listLoading = false;
  clearTimeout(st.listRetry);
  for (const li of st.rows.values()) li.remove();
  st.rows.clear();
  updateAlert();
}

// ---- the client -----------------------------------------------------------

function startClient() {
  const c = connect({ token: st.token, apiURL: st.api, shareTabs: true });
  st.client = c;
  const on = (name, fn) => st.offs.push(c.on(name, fn));
  on('hello', onHello);
  on('resync', onResync);
  on('order', onOrder);
  on('order.processed', onProcessed);
  on('order.seen', onSeen);
  on('notice', (f) => toast('notice', String((f.data && f.data.msg) || ''), 'Message for this dashboard'));
  on('error', (f) => {
    // Error frames answer this client's own frames (acks, pings, limits):
    // nothing a person can act on, so they are counted, not shown.
    bump('errors');
    console.warn('orderpush: error frame', f.data);
  });
  on('duplicate', () => bump('dups'));
  on('gap', () => loadPending());
  on('state', onState);
  on('role', () => { renderRole(); updateAlert(); });
  on('auth', (why) => {
    signOut(why.reason === 'expired'
      ? 'Your session has expired (close 1008). Sign in with a new token.'
      : `The gateway refused the connection (${why.status}${why.message ? ': ' + why.message : ''}).`);
  });
  renderRole();
}

function stopClient() {
  for (const off of st.offs) off();
  st.offs = [];
  if (st.client) st.client.close();
  st.client = null;
  clearInterval(st.countdown);
}

function onHello(h) {
  const d = h.data || {};
  if (h.fresh) {
    loadPending();
  } else if (h.missed > 0) {
    // The replay of what we missed (since < seq <= hello.seq) follows.
    flag(`Resumed · ${h.missed} missed event${h.missed === 1 ? '' : 's'} replayed`);
  } else if (!h.fromTab) {
    flag('Reconnected · nothing missed');
  }
  el.node.textContent = d.node || '–';
  render();
}

function onResync() {
  st.orders.clear(); st.gone.clear(); st.unseen.clear();
  for (const li of st.rows.values()) li.remove();
  st.rows.clear();
  flag('Resynced · state reloaded');
  loadPending();
  render();
}

function onOrder(f) {
  const d = f.data || {};
  const o = d.order;
  if (o && o.orderNo) {
    if (o.status !== 'processed' && !st.gone.has(o.orderNo)) {
      if (!o.seenAt) st.unseen.add(o.orderNo);
      addOrder(o, true);
    }
    toast('order', d.msg || NEW_ORDER_MSG, NEW_ORDER_EN, `${price(o.price)} · user ${o.userId || '?'} · ${o.orderNo}`, o.orderNo);
    if (st.client && st.client.holdsConnection && st.unseen.has(o.orderNo)) chime();
  }
  updateAlert();
  render();
}

function onProcessed(f) {
  const o = (f.data || {}).order;
  if (o && o.orderNo) {
    st.gone.add(o.orderNo);
    removeOrder(o.orderNo);
  }
  updateAlert();
  render();
}

// onSeen: a person looked at the order on some device; every dashboard of
// the merchant stops alerting for it.
function onSeen(f) {
  const o = (f.data || {}).order;
  if (o && o.orderNo) markSeenLocally(o.orderNo);
  render();
}

function onState(s) {
  clearInterval(st.countdown);
  const shared = s.role === 'follower';
  switch (s.state) {
    case 'live':
      setConn('live', shared ? `Live · replica ${s.node || '?'} · through another tab` : `Live · replica ${s.node || '?'}${s.transport === 'sse' ? ' · SSE' : ''}`);
      break;
    case 'connecting':
      setConn('connecting', shared ? 'Waiting for the tab that holds the connection…' : 'Connecting…');
      break;
    case 'reconnecting': {
      if (!s.retryAt) { setConn('connecting', 'Reconnecting…'); break; }
      const why = s.code === 1001 ? 'replica went away' : s.code === 1013 ? 'server busy' : (s.reason || 'connection lost');
      const tick = () => {
        const secs = Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000));
        setConn('reconnecting', `Reconnecting in ${secs}s · ${why} (attempt ${s.attempt})`);
        if (secs === 0) clearInterval(st.countdown);
      };
      tick();
      st.countdown = setInterval(tick, 1000);
      break;
    }
    case 'unauthorized': setConn('offline', 'Signed out'); break;
    default: break;
  }
  el.dConn.textContent = st.client && st.client.info.connId ? `${st.client.info.connId} on ${st.client.info.node} (${s.via || s.transport})` : '–';
}

function renderRole() {
  const c = st.client;
  el.dRole.textContent = !c ? '–' : c.role === 'follower' ? 'shares the connection of another tab'
    : c.role === 'leader' ? 'holds the connection for every tab of this browser' : 'holds its own connection';
  document.body.dataset.role = c ? c.role : '';
}

// ---- pending orders ------------------------------------------------------

async function loadPending() {
  const merchant = st.client && st.client.merchantId;
  if (!merchant) return;
  const gen = ++st.listGen;
  clearTimeout(st.listRetry);
  st.listLoading = true;
  render();
  try {
    let before = '';
    for (let page = 0; page < MAX_PAGES; page++) {
      const q = new URLSearchParams({ status: 'pending', limit: String(PAGE_SIZE) });
      if (before) q.set('before', before);
      const body = await api('GET', `/merchants/${encodeURIComponent(merchant)}/orders?${q}`);
      if (gen !== st.listGen) return; // superseded by a newer load
      for (const o of body.orders || []) {
        if (o.status !== 'pending' || st.gone.has(o.orderNo)) continue;
        // seenAt null: nobody has looked at it yet. An order API without
        // receipts sends no seenAt at all: then the list does not alert.
        if (o.seenAt === null && !st.seenSent.has(o.orderNo)) st.unseen.add(o.orderNo);
        addOrder(o, false);
      }
      before = body.next || '';
      if (!before) break;
    }
    st.listLoading = false;
    el.listError.hidden = true;
    updateAlert();
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
  } catch {
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
    await st.client.process(orderNo);
    // The order.processed event updates the count for every open
    // dashboard; this row can go now (processing also marks it seen).
    st.gone.add(orderNo);
    removeOrder(orderNo);
    updateAlert();
    render();
  } catch (err) {
    if (err.status === 401) { signOut(`The order API refused this token: ${err.message}`); return; }
    button.disabled = false;
    button.textContent = 'Mark processed';
    toast('error', `Could not mark ${orderNo} processed`, err.message);
  }
}

// seen: a person looked at the order here (clicked its toast, its row or
// "Got it"). The alert stops in this browser at once; the order.seen event
// stops it on the merchant's other devices.
function seen(orderNo) {
  if (!st.unseen.has(orderNo) || !st.client) return;
  markSeenLocally(orderNo);
  st.seenSent.add(orderNo);
  bump('seenSent');
  st.client.seen(orderNo).catch((err) => {
    if (err.status === 401) { signOut(`The order API refused this token: ${err.message}`); return; }
    toast('error', `Could not mark ${orderNo} seen`, err.message);
  });
  render();
}

function markSeenLocally(orderNo) {
  st.unseen.delete(orderNo);
  const li = st.rows.get(orderNo);
  if (li) li.classList.remove('unseen');
  for (const t of el.toasts.querySelectorAll('.toast-order')) {
    if (t.dataset.orderNo === orderNo) t.classList.add('seen');
  }
  updateAlert();
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
  st.unseen.delete(orderNo);
  const li = st.rows.get(orderNo);
  if (li) { li.remove(); st.rows.delete(orderNo); }
}

function rowFor(o, fresh) {
  const li = document.createElement('li');
  li.className = 'order' + (fresh ? ' fresh' : '') + (st.unseen.has(o.orderNo) ? ' unseen' : '');
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
  const got = document.createElement('button');
  got.type = 'button';
  got.className = 'got-it';
  got.textContent = 'Got it · 知道了';
  got.addEventListener('click', (e) => { e.stopPropagation(); seen(o.orderNo); });
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'process';
  b.textContent = 'Mark processed';
  b.addEventListener('click', (e) => { e.stopPropagation(); markProcessed(o.orderNo, b); });
  li.addEventListener('click', () => seen(o.orderNo));
  li.append(main, meta, got, b);
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
  const c = st.client;
  const sum = c ? c.orderSum : null;
  el.count.textContent = typeof sum === 'number' ? String(sum) : '–';
  el.count.classList.toggle('zero', sum === 0);
  el.seq.textContent = c && c.seq !== null ? String(c.seq) : '–';
  const merchant = c ? c.merchantId : '';
  el.merchant.textContent = merchant ? `Merchant ${merchant}` : '';
  el.merchant.hidden = !merchant;
  el.dMerchant.textContent = merchant || '–';
  el.empty.hidden = st.orders.size > 0 || st.listLoading || typeof sum !== 'number';
  const shown = st.orders.size;
  el.listInfo.textContent = st.listLoading ? 'Loading…'
    : typeof sum === 'number' && sum > shown ? `${shown} shown of ${sum}` : '';
  const unseen = st.unseen.size;
  el.unseen.hidden = unseen === 0;
  el.unseenN.textContent = String(unseen);
  document.body.dataset.unseen = String(unseen);
  document.title = unseen > 0 ? `(${unseen} new) OrderPush`
    : typeof sum === 'number' && sum > 0 ? `(${sum}) OrderPush` : 'OrderPush · Merchant dashboard';
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

// toast shows a short-lived message; lines after the title are smaller. An
// order's toast is clickable: clicking it says a person saw the order.
function toast(kind, title, line1, line2, orderNo) {
  const t = document.createElement('div');
  t.className = `toast toast-${kind}`;
  t.setAttribute('role', 'status');
  const a = document.createElement('div');
  a.className = 'toast-title';
  a.textContent = title;
  t.append(a);
  for (const line of [line1, line2].filter(Boolean)) {
    const b = document.createElement('div');
    b.className = 'toast-line';
    b.textContent = line;
    t.append(b);
  }
  if (orderNo) {
    t.dataset.orderNo = orderNo;
    t.title = 'Click: got it';
    t.addEventListener('click', () => { seen(orderNo); t.classList.add('out'); });
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

// ---- sound and the alert ---------------------------------------------------

// updateAlert keeps the repeating chime running while an order is unseen,
// in the tab that holds the connection only (one chime per browser).
function updateAlert() {
  const want = st.unseen.size > 0 && st.repeatS > 0 && !!st.client && st.client.holdsConnection;
  document.body.dataset.alerting = String(want);
  if (want && !st.alertTimer) st.alertTimer = setInterval(chime, st.repeatS * 1000);
  if (!want && st.alertTimer) { clearInterval(st.alertTimer); st.alertTimer = 0; }
  render();
}

// The chime is synthesised (two short sine tones) so there is no asset to
// fetch. Browsers start audio only after a user gesture, so the context is
// created on the first click or key press.
function unlockAudio() {
  if (st.audio || !st.soundOn) return;
  const AC = window.AudioContext || window.webkitAudioContext;
  if (!AC) return;
  try { st.audio = new AC(); } catch { st.audio = null; }
}

// chime plays once (muted: not at all). Each chime counts in
// <body data-chimes> and fires an "orderpush:chime" event, for tests.
function chime() {
  if (!st.soundOn) return;
  const now = Date.now();
  if (now - st.lastChime < CHIME_BURST_MS) return; // a burst of orders gives one chime
  st.lastChime = now;
  bump('chimes');
  document.dispatchEvent(new CustomEvent('orderpush:chime', { detail: { unseen: st.unseen.size } }));
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
  save(LEGACY_API, '');
  const params = new URLSearchParams(location.search);
  st.soundOn = load(STORE_SOUND) !== 'off';
  const repeat = load(STORE_REPEAT);
  st.repeatS = repeat === '' ? DEFAULT_REPEAT_S : Math.max(0, Math.min(3600, Number(repeat) || 0));
  el.repeat.value = String(st.repeatS);
  if (el.repeat.value !== String(st.repeatS)) {
    // A value the menu does not list (set by hand): show it as an option.
    el.repeat.add(new Option(`every ${st.repeatS} s`, String(st.repeatS), true, true));
  }
  renderSound();

  let token = (params.get('token') || '').trim();
  if (params.has('token') || params.has('api')) {
    // Keep the token out of the address bar, history and screenshots. A
    // link's ?api= is ignored: the gateway says where the order API is.
    params.delete('token'); params.delete('api');
    const q = params.toString();
    history.replaceState(null, '', location.pathname + (q ? `?${q}` : '') + location.hash);
  }
  if (!token) token = load(STORE_TOKEN);

  el.signinForm.addEventListener('submit', (e) => {
    e.preventDefault();
    unlockAudio();
    const t = el.tokenInput.value.trim();
    try { checkToken(t); } catch (err) { showSignIn(err.message); el.tokenInput.value = t; return; }
    el.tokenInput.value = '';
    signIn(t);
  });
  el.signout.addEventListener('click', () => signOut(''));
  el.sound.addEventListener('click', () => {
    st.soundOn = !st.soundOn;
    save(STORE_SOUND, st.soundOn ? '' : 'off');
    if (st.soundOn) { unlockAudio(); st.lastChime = 0; chime(); }
    renderSound();
  });
  el.repeat.addEventListener('change', () => {
    st.repeatS = Number(el.repeat.value) || 0;
    save(STORE_REPEAT, String(st.repeatS));
    clearInterval(st.alertTimer); st.alertTimer = 0;
    updateAlert();
  });
  el.unseen.addEventListener('click', () => { for (const no of [...st.unseen]) seen(no); });
  document.addEventListener('pointerdown', unlockAudio, { once: true });
  document.addEventListener('keydown', unlockAudio, { once: true });
  window.addEventListener('storage', (e) => {
    // Another tab changed the alert setting: follow it.
    if (e.key === STORE_REPEAT) { st.repeatS = Number(e.newValue) || 0; el.repeat.value = String(st.repeatS); clearInterval(st.alertTimer); st.alertTimer = 0; updateAlert(); }
  });

  if (!token) { showSignIn(''); return; }
  try { checkToken(token); } catch (err) { save(STORE_TOKEN, ''); showSignIn(err.message); return; }
  signIn(token);
}

// Read-only view of the state for tests and debugging.
window.orderpush = Object.freeze({
  version: VERSION,
  state: () => {
    const c = st.client;
    return {
      seq: c ? c.seq : null, orderSum: c ? c.orderSum : null, node: c ? c.info.node : '',
      merchantId: c ? c.merchantId : '', orders: [...st.orders.keys()], unseen: [...st.unseen],
      role: c ? c.role : '', transport: c ? c.state.transport : '', api: st.api,
    };
  },
});

init();
