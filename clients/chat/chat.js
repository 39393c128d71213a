// The lhttpd chat demo: rooms are channels, every message is an LHTTP "chat" message
// published to its room with the sender's nickname, an id and the time in headers.
// Joins, leaves and nickname changes are "presence" messages. A sender sees its own
// message as "sending" until the server delivers it back (it is subscribed to the room).
//
// Identity: when the server serves demo-tokens.js beside this page (`make run` mints
// demo users' tokens into it), you sign in as one of those users; the SDK presents the
// token, and the names shown are the `sender` header that lhttpd stamps on messages of
// stamp_user namespaces (chat.*, team.*), never what the sending page says. Without
// demo-tokens.js the page works as before: a nickname of your choice.
//
// History: in rooms whose namespace keeps history (`make run`: chat.*), joining shows
// the room's last messages (a history read), and the subscription starts where the read
// ended; after a reconnection the SDK recovers every message sent meanwhile, and they
// come once, in order. When it cannot (too many missed, or the history was reset), the
// SDK says "gap" and the room is reloaded from the history.
//
// Query parameters: ?ws=URL (default /ws on this host), ?nick=NAME, ?room=NAME,
// ?user=NAME (sign in as that demo user).
import { LhttpClient, isValidChannel } from './lhttp.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MAX_KEPT = 500; // messages kept per room
const HISTORY_SHOWN = 50; // messages of a room's history shown when joining it

const store = {
  get(key, fallback) {
    try {
      return JSON.parse(localStorage.getItem(`lhttp-chat.${key}`)) ?? fallback;
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(`lhttp-chat.${key}`, JSON.stringify(value));
    } catch {
      // Private mode or storage full: the chat works without remembering.
    }
  },
};

// The demo users, or null when the server serves none (no identity: nicknames).
const demo = await import('./demo-tokens.js').then((m) => (Array.isArray(m.default?.users) ? m.default : null), () => null);
const me = demo ? demo.users.find((u) => u.user === (params.get('user') ?? store.get('user', ''))) ?? null : null;
const roomsKey = demo ? 'rooms.signed-in' : 'rooms';

// name -> { items: [], unread: 0, epoch, offset }: epoch and offset of the last history
// message shown (history rooms), so that none is shown twice.
const rooms = new Map();
const pending = new Map(); // message id -> its <li>, until the server delivers it back
let current = null;
let nick = me ? me.user
  : cleanNick(params.get('nick') ?? store.get('nick', '')) || `guest-${1000 + Math.floor(Math.random() * 9000)}`;
let client = null;
let opens = 0;
let outage = false;

function cleanNick(s) {
  return String(s).replace(/[\0-\x1f\x7f]/g, '').trim().slice(0, 32);
}

function serverUrl() {
  const u = new URL(params.get('ws') || '/ws', location.href);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  return u.href;
}

const newId = () => Math.random().toString(36).slice(2, 10) + Date.now().toString(36);

// ---- Connection ----------------------------------------------------------------------

const CLOSE_REASONS = {
  1000: 'closed', 1001: 'server going away', 1006: 'connection lost', 1008: 'refused by policy',
  1009: 'message too big', 1011: 'server error', 1012: 'server reloaded', 4008: 'too slow',
  4401: 'signed out: token refused or expired', 4403: 'disconnected by the server',
};

function setStatus(state, text) {
  const el = $('status');
  el.dataset.state = state;
  el.dataset.opens = String(opens);
  $('status-text').textContent = text;
  $('retry').hidden = state !== 'closed';
}

function start() {
  // The demo's tokens are static; a real page's getToken asks its backend for a new one.
  const auth = me ? { getToken: async () => me.token } : {};
  client = new LhttpClient(serverUrl(), { command: 'chat', ...auth });
  setStatus('connecting', 'Connecting…');
  for (const room of rooms.keys()) subscribeRoom(room);

  client.on('open', ({ reconnected }) => {
    opens++;
    setStatus('open', 'Connected');
    if (reconnected || outage) notice(current, 'Connected again.');
    outage = false;
  });

  client.on('auth', ({ user }) => {
    $('whoami').textContent = user ? `(server: ${user})` : '(server: anonymous)';
    $('whoami').dataset.user = user;
  });

  client.on('unsubscribed', ({ channel, reason }) => {
    if (!rooms.has(channel)) return;
    dropRoom(channel);
    notice(current, `The server ended your subscription to #${channel}${reason ? `: ${reason}` : ''}.`);
  });

  client.on('close', ({ code, willReconnect, status }) => {
    const why = status ? `HTTP ${status}` : (CLOSE_REASONS[code] ?? `close ${code}`);
    if (willReconnect) {
      if (!outage) notice(current, `Disconnected (${why}); reconnecting…`);
      outage = true;
      setStatus('reconnecting', `Reconnecting… (${why})`);
    } else {
      setStatus('closed', `Disconnected (${why})`);
      notice(current, `Disconnected (${why}).`);
    }
  });

  client.on('reconnecting', ({ attempt, delayMs }) => {
    const secs = (delayMs / 1000).toFixed(1);
    $('status-text').textContent = `Reconnecting in ${secs} s (attempt ${attempt})…`;
  });

  client.on('error', (err) => {
    if (err.kind === 'server' && err.inReplyTo === 'subscribe') return; // subscribeRoom says it
    if (err.kind === 'server') notice(current, `The server refused a message: ${err.reason || err.code}.`);
    else if (err.kind === 'auth') notice(current, err.message);
    else console.debug('lhttp:', err.message);
  });

  client.on('join', ({ channel }) => refreshOnline(channel));
  client.on('leave', ({ channel }) => refreshOnline(channel));
  client.on('message', (m) => {
    for (const room of m.channels) {
      if (!rooms.has(room) || seen(room, m)) continue;
      if (m.command === 'chat') receiveChat(room, m);
      else if (m.command === 'presence') receivePresence(room, m);
    }
  });

  // Messages of a history room were lost for good (too many sent while this page was
  // away, or the history was reset): show the room as the history has it now.
  client.on('gap', ({ channel }) => {
    if (!rooms.has(channel)) return;
    loadHistory(channel, 'Some messages could not be recovered: the room is reloaded from its history.');
  });
}

// True when m, a history room's message, is at or before the last one shown there
// (else it becomes the last one shown). A message published to several rooms has an
// offset in each: only one published to this room alone counts.
function seen(room, m) {
  const r = rooms.get(room);
  if (m.offset === null || !r || m.channels.length !== 1) return false;
  if (r.epoch === m.epoch && m.offset <= r.offset) return true;
  r.epoch = m.epoch;
  r.offset = m.offset;
  return false;
}

// Reads a history room's last messages and shows them in place of what the room shows;
// resolves with the read (null for a room without history or a failed read).
async function loadHistory(room, why) {
  let h;
  try {
    h = await client.history(room, { limit: HISTORY_SHOWN });
  } catch (err) {
    // 404: a room without history; 403: the subscription says so.
    if (err.code !== 404 && err.code !== 403) notice(room, `History not available: ${err.reason || err.message}.`);
    return null;
  }
  const r = rooms.get(room);
  if (!r) return null;
  for (const it of r.items) it.el.remove();
  r.items = [];
  r.epoch = h.epoch;
  r.offset = 0;
  if (why) notice(room, why);
  for (const m of h.messages) {
    if (seen(room, m) || m.command !== 'chat') continue;
    receiveChat(room, m, true);
  }
  r.epoch = h.epoch;
  r.offset = h.offset;
  if (room === current) show(room);
  return h;
}

$('retry').addEventListener('click', () => start());

// ---- Rooms ---------------------------------------------------------------------------

function presence(room, event, extra = {}) {
  client.publish(room, '', { command: 'presence', headers: { nick, event, ...extra } });
}

// Subscribes to a room; once the server has taken the subscription, says so in the
// room (a presence "join"); when it refuses it (403: the room's rules do not allow this
// user), drops the room and shows the server's reason. A history room first shows its
// last messages, and the subscription starts right after them (no gap, no duplicate);
// a room without history answers the read with 404 and is subscribed as is.
async function subscribeRoom(room) {
  let since = {};
  try {
    const h = await loadHistory(room);
    if (h) since = { since: h.offset, epoch: h.epoch };
  } catch {
    // Read refused for another reason: the subscription says why.
  }
  if (!rooms.has(room)) return;
  client.subscribeAsync(room, since).then(() => {
    presence(room, 'join');
    refreshOnline(room);
  }, (err) => refused(room, err));
}

function refused(room, err) {
  if (!rooms.has(room) || err.kind !== 'server') return;
  dropRoom(room);
  const why = `#${room}: refused by the server (${err.code}${err.reason ? `: ${err.reason}` : ''}).`;
  const el = $('join-error');
  el.textContent = why;
  el.dataset.code = String(err.code);
  el.hidden = false;
  notice(current, why);
}

function join(room) {
  if (!rooms.has(room)) {
    rooms.set(room, { items: [], unread: 0, epoch: null, offset: 0 });
    subscribeRoom(room);
    store.set(roomsKey, [...rooms.keys()]);
  }
  show(room);
}

// Forgets a room without telling anyone (the server refused or ended it).
function dropRoom(room) {
  rooms.delete(room);
  store.set(roomsKey, [...rooms.keys()]);
  if (current === room) show(rooms.keys().next().value ?? null);
  else renderRooms();
}

function leave(room) {
  if (!rooms.has(room)) return;
  if (client.state === 'open') presence(room, 'leave');
  client.unsubscribe(room);
  dropRoom(room);
}

function show(room) {
  current = room;
  $('online').hidden = true;
  refreshOnline(room);
  const r = rooms.get(room);
  if (r) r.unread = 0;
  $('room-title').textContent = room ? `#${room}` : 'No room';
  $('text').placeholder = room ? `Message #${room}` : 'Join a room to chat';
  $('text').disabled = $('send').disabled = $('leave').disabled = !room;
  const list = $('messages');
  list.replaceChildren(...(r ? r.items.map((it) => it.el) : []));
  list.scrollTop = list.scrollHeight;
  renderRooms();
  if (room) $('text').focus();
}

function renderRooms() {
  const ul = $('rooms');
  ul.replaceChildren(...[...rooms].map(([name, r]) => {
    const li = document.createElement('li');
    li.dataset.room = name;
    li.className = name === current ? 'current' : '';
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = `#${name}`;
    b.addEventListener('click', () => show(name));
    li.append(b);
    if (r.unread) {
      const badge = document.createElement('span');
      badge.className = 'unread';
      badge.textContent = String(r.unread);
      li.append(badge);
    }
    return li;
  }));
}

$('join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = $('room-input').value.trim().replace(/^#/, '');
  const err = $('join-error');
  if (!isValidChannel(name)) {
    err.textContent = name ? `"${name}" is not a valid room name.` : 'Type a room name.';
    err.hidden = false;
    return;
  }
  err.hidden = true;
  $('room-input').value = '';
  join(name);
});

$('leave').addEventListener('click', () => leave(current));

// ---- Messages ------------------------------------------------------------------------

function timeOf(header) {
  const t = Number(header);
  return Number.isFinite(t) && t > 0 ? new Date(t) : new Date();
}

function hue(s) {
  let h = 0;
  for (const ch of s) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

// Adds an item to a room; renders it when the room is shown (an old one from history
// counts as read).
function add(room, el, old = false) {
  const r = rooms.get(room);
  if (!r) return;
  r.items.push({ el });
  if (r.items.length > MAX_KEPT) r.items.shift().el.remove();
  if (room === current) {
    const list = $('messages');
    const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(el);
    if (atEnd) list.scrollTop = list.scrollHeight;
  } else if (el.classList.contains('msg') && !old) {
    r.unread++;
    renderRooms();
  }
}

function messageEl({ from, verified = true, when, text, mine }) {
  const li = document.createElement('li');
  li.className = mine ? 'msg mine' : 'msg';
  const meta = document.createElement('div');
  meta.className = 'meta';
  const who = document.createElement('span');
  who.className = verified ? 'nick' : 'nick unverified';
  if (!verified) who.title = 'name given by the sender\'s page, not by the server';
  who.textContent = from;
  who.style.setProperty('--hue', String(hue(from)));
  const time = document.createElement('time');
  time.dateTime = when.toISOString();
  time.title = when.toLocaleString();
  time.textContent = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  meta.append(who, time);
  const body = document.createElement('div');
  body.className = 'text';
  body.textContent = text;
  li.append(meta, body);
  return li;
}

function notice(room, text) {
  if (!room) return;
  const li = document.createElement('li');
  li.className = 'notice';
  li.textContent = text;
  add(room, li);
}

function receiveChat(room, m, old = false) {
  const id = m.headers.id;
  if (id && pending.has(id)) {
    const el = pending.get(id);
    pending.delete(id);
    el.classList.remove('pending');
    el.querySelector('.state')?.remove();
    return;
  }
  const { name, verified } = senderOf(m);
  const el = messageEl({ from: name, verified, when: timeOf(m.headers.time), text: m.body, mine: false });
  if (m.offset !== null) el.dataset.offset = String(m.offset);
  if (old) el.classList.add('old');
  add(room, el, old);
}

// Who sent m: in stamp_user namespaces lhttpd sets `sender` to the publisher's user id
// (removing any the publisher sent; "" for an anonymous one). Elsewhere only the
// sender's page says, in `nick`: shown as unverified when the page is signed in.
function senderOf(m) {
  if (m.headers.sender !== undefined) return { name: m.headers.sender || 'anonymous', verified: true };
  return { name: m.headers.nick || 'anonymous', verified: !demo };
}

// ---- Who is online (lhttpd's presence) ----------------------------------------------
// The list of the current room comes from client.presence(): every connection subscribed
// to it, on every worker and node. It is asked again when someone joins or leaves (the
// server's join/leave events where the room's namespace has join_leave, the demo's own
// presence messages elsewhere) and every few seconds (a closed tab says nothing). A room
// whose namespace has no presence (404) shows no list.
const onlineAsked = new Map(); // room -> a refresh is due (coalesces bursts)

function refreshOnline(room) {
  if (!room || !rooms.has(room) || onlineAsked.get(room)) return;
  onlineAsked.set(room, true);
  setTimeout(async () => {
    onlineAsked.delete(room);
    let res = null;
    try {
      res = await client.presence(room);
    } catch {
      res = null; // no presence in this namespace, or not now
    }
    if (room === current) renderOnline(room, res);
  }, 50);
}

function renderOnline(room, res) {
  const box = $('online');
  if (!res) {
    box.hidden = true;
    return;
  }
  const names = [...new Set(res.clients.map((e) => e.user || (e.info && e.info.name) || 'anonymous'))].sort();
  $('online-room').textContent = `#${room}`;
  $('online-count').textContent = String(res.users || res.count);
  const list = $('online-list');
  list.replaceChildren(...names.map((n) => {
    const li = document.createElement('li');
    li.textContent = n;
    return li;
  }));
  box.dataset.users = names.join(' ');
  box.hidden = false;
}

setInterval(() => refreshOnline(current), 5000);

function receivePresence(room, m) {
  refreshOnline(room);
  const who = senderOf(m).name;
  if (m.headers.event === 'join') notice(room, `${who} joined #${room}.`);
  else if (m.headers.event === 'leave') notice(room, `${who} left #${room}.`);
  else if (m.headers.event === 'rename' && m.headers.from) notice(room, `${m.headers.from} is now ${who}.`);
}

$('composer').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = $('text').value;
  if (!current || !text.trim()) return;
  const id = newId();
  const now = new Date();
  const el = messageEl({ from: client.user || nick, when: now, text, mine: true });
  el.classList.add('pending');
  const state = document.createElement('span');
  state.className = 'state';
  state.textContent = 'sending…';
  el.querySelector('.meta').append(state);
  try {
    client.publish(current, text, { command: 'chat', headers: { nick, id, time: now.getTime() } });
  } catch (err) {
    notice(current, `Not sent: ${err.message}`);
    return;
  }
  pending.set(id, el);
  add(current, el);
  $('text').value = '';
});

// ---- Nickname ------------------------------------------------------------------------

$('nick').value = nick;
$('nick').addEventListener('change', () => {
  const next = cleanNick($('nick').value);
  if (!next) {
    $('nick').value = nick;
    return;
  }
  $('nick').value = next;
  if (next === nick) return;
  const from = nick;
  nick = next;
  store.set('nick', nick);
  if (client.state === 'open') for (const room of rooms.keys()) presence(room, 'rename', { from });
});

// ---- Sign-in (demo users) ------------------------------------------------------------

// Signing in as another user starts over with that user's token: the page reloads.
function signIn(user) {
  store.set('user', user);
  const q = new URLSearchParams(location.search);
  q.set('user', user);
  location.search = q.toString();
}

if (demo) {
  $('nick-label').hidden = true;
  $('user-label').hidden = false;
  $('user').replaceChildren(...demo.users.map((u) => new Option(u.user, u.user, false, u === me)));
  $('user').addEventListener('change', () => signIn($('user').value));
  $('signin-users').replaceChildren(...demo.users.map((u) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.user = u.user;
    b.textContent = u.user;
    b.title = u.channels.length ? `may also enter ${u.channels.map((c) => `#${c}`).join(' ')}` : 'public rooms only';
    b.addEventListener('click', () => signIn(u.user));
    return b;
  }));
  const priv = demo.rooms?.private;
  if (priv) {
    const allowed = demo.users.filter((u) => u.channels.includes(priv)).map((u) => u.user);
    $('private-hint').textContent = `Private room: #${priv} (${allowed.join(', ')} only).`;
    $('private-hint').hidden = false;
  }
}

// ---- Start ---------------------------------------------------------------------------

if (demo && !me) {
  $('signin').hidden = false; // nothing connects before you pick a user
} else {
  start();
  let saved = store.get(roomsKey, []);
  if (!Array.isArray(saved) || !saved.length) saved = [demo?.rooms?.lobby ?? 'lobby'];
  for (const room of saved) if (isValidChannel(room)) join(room);
  const asked = params.get('room');
  if (asked && isValidChannel(asked)) join(asked);
  else show(rooms.keys().next().value ?? null);
}
// Tests and curious people: the client is on window.
window.lhttpChat = { get client() { return client; } };
