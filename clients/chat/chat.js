// The lhttpd chat demo: rooms are channels, every message is an LHTTP "chat" message
// published to its room with the sender's nickname, an id and the time in headers.
// Joins, leaves and nickname changes are "presence" messages. A sender sees its own
// message as "sending" until the server delivers it back (it is subscribed to the room).
//
// Query parameters: ?ws=URL (default /ws on this host), ?nick=NAME, ?room=NAME.
import { LhttpClient, isValidChannel } from './lhttp.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MAX_KEPT = 500; // messages kept per room

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

const rooms = new Map(); // name -> { items: [], unread: 0 }
const pending = new Map(); // message id -> its <li>, until the server delivers it back
let current = null;
let nick = cleanNick(params.get('nick') ?? store.get('nick', '')) || `guest-${1000 + Math.floor(Math.random() * 9000)}`;
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
};

function setStatus(state, text) {
  const el = $('status');
  el.dataset.state = state;
  el.dataset.opens = String(opens);
  $('status-text').textContent = text;
  $('retry').hidden = state !== 'closed';
}

function start() {
  client = new LhttpClient(serverUrl(), { command: 'chat' });
  setStatus('connecting', 'Connecting…');
  client.subscribe([...rooms.keys()]);

  client.on('open', ({ reconnected }) => {
    opens++;
    setStatus('open', 'Connected');
    if (reconnected || outage) notice(current, 'Connected again.');
    outage = false;
    if (!reconnected) for (const room of rooms.keys()) presence(room, 'join');
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
    if (err.kind === 'server') notice(current, `The server refused a message: ${err.reason || err.code}.`);
    else console.debug('lhttp:', err.message);
  });

  client.on('message', (m) => {
    for (const room of m.channels) {
      if (!rooms.has(room)) continue;
      if (m.command === 'chat') receiveChat(room, m);
      else if (m.command === 'presence') receivePresence(room, m);
    }
  });
}

$('retry').addEventListener('click', () => start());

// ---- Rooms ---------------------------------------------------------------------------

function presence(room, event, extra = {}) {
  client.publish(room, '', { command: 'presence', headers: { nick, event, ...extra } });
}

function join(room, { announce = true } = {}) {
  if (!rooms.has(room)) {
    rooms.set(room, { items: [], unread: 0 });
    client.subscribe(room);
    if (announce && client.state === 'open') presence(room, 'join');
    store.set('rooms', [...rooms.keys()]);
  }
  show(room);
}

function leave(room) {
  if (!rooms.has(room)) return;
  if (client.state === 'open') presence(room, 'leave');
  client.unsubscribe(room);
  rooms.delete(room);
  store.set('rooms', [...rooms.keys()]);
  show(rooms.keys().next().value ?? null);
}

function show(room) {
  current = room;
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

// Adds an item to a room; renders it when the room is shown.
function add(room, el) {
  const r = rooms.get(room);
  if (!r) return;
  r.items.push({ el });
  if (r.items.length > MAX_KEPT) r.items.shift().el.remove();
  if (room === current) {
    const list = $('messages');
    const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(el);
    if (atEnd) list.scrollTop = list.scrollHeight;
  } else if (el.classList.contains('msg')) {
    r.unread++;
    renderRooms();
  }
}

function messageEl({ from, when, text, mine }) {
  const li = document.createElement('li');
  li.className = mine ? 'msg mine' : 'msg';
  const meta = document.createElement('div');
  meta.className = 'meta';
  const who = document.createElement('span');
  who.className = 'nick';
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

function receiveChat(room, m) {
  const id = m.headers.id;
  if (id && pending.has(id)) {
    const el = pending.get(id);
    pending.delete(id);
    el.classList.remove('pending');
    el.querySelector('.state')?.remove();
    return;
  }
  add(room, messageEl({ from: m.headers.nick || 'anonymous', when: timeOf(m.headers.time), text: m.body, mine: false }));
}

function receivePresence(room, m) {
  const who = m.headers.nick || 'someone';
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
  const el = messageEl({ from: nick, when: now, text, mine: true });
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

// ---- Start ---------------------------------------------------------------------------

start();
let saved = store.get('rooms', []);
if (!Array.isArray(saved) || !saved.length) saved = ['lobby'];
for (const room of saved) if (isValidChannel(room)) join(room, { announce: false });
const asked = params.get('room');
if (asked && isValidChannel(asked)) join(asked, { announce: false });
else show(rooms.keys().next().value ?? null);
// Tests and curious people: the client is on window.
window.lhttpChat = { get client() { return client; } };
