// Integration tests of the SDK against a real lhttpd and nats-server (started by
// harness.js on free loopback ports): pub/sub both ways across workers, multipart and
// binary bodies, error replies, reconnection after a reload (1012) and after a restart
// (1001, then back-off while the server is down), the handshake refusals (403 stops,
// 503 backs off), the Node example of README.md as pasted, and identity (issue 17):
// tokens minted here (HS256 with node:crypto), auth first, refused subscriptions, the
// server-stamped sender, refresh before expiry, the server API's disconnect (4401:
// reconnect with a new token; 4403: stop) and unsubscribe. Skipped when the
// prerequisites are missing, unless LH_REQUIRE_INTEGRATION=1. History (issue 18): with
// JetStream, a client away while messages are published recovers each once, in order,
// also through reloads; an evicted offset gives recovered:false and a gap; history().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { LhttpClient, MultipartBuilder } from '../lhttp.js';
import { servers, missingPrerequisite, loadWs, waitFor } from './harness.js';

const skip = (await missingPrerequisite()) || false;
const WebSocket = await loadWs();

// A client of the servers s that records its events; next(pred) waits for (and takes)
// the first message matching pred. s closes it before the servers stop.
function connect(s, opts = {}) {
  const c = new LhttpClient(s.url, { WebSocket, minDelayMs: 50, maxDelayMs: 400, ...opts });
  const rec = { c, messages: [], errors: [], closes: [], reconnecting: [], opens: 0 };
  c.on('open', () => rec.opens++);
  c.on('message', (m) => rec.messages.push(m));
  c.on('error', (e) => rec.errors.push(e));
  c.on('close', (e) => rec.closes.push(e));
  c.on('reconnecting', (e) => rec.reconnecting.push(e));
  rec.next = async (pred, ms = 5000) => {
    let found;
    await waitFor(() => (found = rec.messages.find(pred)), ms, `a message matching ${pred}`);
    rec.messages.splice(rec.messages.indexOf(found), 1);
    return found;
  };
  s.clients.push(c);
  return rec;
}

// Subscribes and proves the subscription is in place: the client's own publication
// to the channel comes back.
async function join(rec, channel) {
  rec.c.subscribe(channel);
  const token = `probe-${Math.random()}`;
  rec.c.publish(channel, token, { command: 'probe' });
  await rec.next((m) => m.command === 'probe' && m.body === token);
}

test('pubsub: two clients exchange messages both ways; colons, UTF-8, multipart and bytes survive', { skip }, async (t) => {
  const s = await servers(t);
  const a = connect(s);
  const b = connect(s);
  await join(a, 'room1');
  await join(b, 'room1');

  a.c.publish('room1', 'héllo 🌍', { command: 'chat', headers: { nick: 'ann', url: 'http://h:8080/x' } });
  let m = await b.next((x) => x.command === 'chat');
  assert.equal(m.body, 'héllo 🌍');
  assert.equal(m.headers.nick, 'ann');
  assert.equal(m.headers.url, 'http://h:8080/x');
  assert.deepEqual(m.channels, ['room1']);

  b.c.publish('room1', 'hi ann', { command: 'chat', headers: { nick: 'bob' } });
  m = await a.next((x) => x.command === 'chat' && x.headers.nick === 'bob');
  assert.equal(m.body, 'hi ann');
  await a.next((x) => x.body === 'héllo 🌍'); // a's own publication: a is subscribed too
  await b.next((x) => x.body === 'hi ann');

  const mp = new MultipartBuilder().add({ 'content-type': 'text/plain' }, 'naïve ✓').add({ name: 'raw' }, new Uint8Array([0, 0xff, 0xfe]));
  a.c.publish('room1', mp, { command: 'files' });
  m = await b.next((x) => x.command === 'files');
  assert.equal(m.parts.length, 2);
  assert.equal(m.parts[0].body, 'naïve ✓');
  assert.deepEqual([...m.parts[1].bodyBytes], [0, 0xff, 0xfe]);

  b.c.unsubscribe('room1');
  await join(b, 'room2');
  a.c.publish('room1', 'b has left', { command: 'chat' });
  a.c.publish('room2', 'over here', { command: 'chat' });
  m = await b.next((x) => x.command === 'chat');
  assert.equal(m.body, 'over here', 'b no longer gets room1');
  assert.equal(a.errors.length + b.errors.length, 0, String([...a.errors, ...b.errors]));
});

test('errors: an error reply is an error event and the connection stays open', { skip }, async (t) => {
  const s = await servers(t);
  const a = connect(s);
  a.c.send('chat', { subscribe: 'a..b' });
  await waitFor(() => a.errors.length === 1);
  const [e] = a.errors;
  assert.equal(e.kind, 'server');
  assert.equal(e.code, 400);
  assert.equal(e.inReplyTo, 'chat');
  // A multipart header that does not fit the body (PROTOCOL.md section 5).
  a.c.send('files', { multipart: '0 99' }, 'k:v\r\n\r\nbody');
  await waitFor(() => a.errors.length === 2);
  assert.equal(a.errors[1].code, 400);
  assert.match(a.errors[1].reason, /multipart/);
  assert.ok(await a.c.ping() >= 0);
  assert.equal(a.c.state, 'open');
});

test('reload: clients drained with 1012 reconnect at once, resubscribe and keep chatting', { skip }, async (t) => {
  // Without the handoff (which keeps them connected): drained, then 1012.
  const s = await servers(t, { handoff: { enabled: false } });
  const a = connect(s);
  const b = connect(s);
  await join(a, 'room');
  await join(b, 'room');
  s.reload();
  await waitFor(() => a.opens >= 2 && b.opens >= 2, 10000, 'both clients reconnected');
  for (const r of [a, b]) {
    assert.equal(r.closes[0].code, 1012);
    assert.equal(r.closes[0].willReconnect, true);
    assert.ok(r.reconnecting[0].delayMs < 100);
  }
  await waitFor(() => a.c.state === 'open' && b.c.state === 'open');
  // Resubscribed by the SDK: no join() here.
  a.c.publish('room', 'after reload from a', { command: 'chat' });
  assert.equal((await b.next((m) => m.command === 'chat')).body, 'after reload from a');
  b.c.publish('room', 'after reload from b', { command: 'chat' });
  assert.equal((await a.next((m) => m.body === 'after reload from b')).command, 'chat');
});

test('restart: clients get 1001, back off while the server is down, resubscribe when it is back', { skip }, async (t) => {
  const s = await servers(t);
  const a = connect(s);
  const b = connect(s);
  await join(a, 'room');
  await join(b, 'room');
  await s.stop();
  await waitFor(() => a.reconnecting.length >= 2 && b.reconnecting.length >= 2, 5000, 'failed attempts');
  assert.equal(a.closes[0].code, 1001);
  assert.equal(a.c.state, 'reconnecting');
  assert.ok(a.reconnecting[1].delayMs >= 25, 'a refused attempt backs off');
  // Published while the server is down: queued, sent after the resubscription.
  assert.equal(a.c.publish('room', 'sent while down', { command: 'chat' }), false);
  await s.start();
  await waitFor(() => a.c.state === 'open' && b.c.state === 'open', 5000, 'both clients back');
  assert.equal((await a.next((m) => m.body === 'sent while down')).command, 'chat');
  await join(b, 'room'); // b's resubscription is in place
  a.c.publish('room', 'after restart', { command: 'chat' });
  assert.equal((await b.next((m) => m.body === 'after restart')).command, 'chat');
  b.c.publish('room', 'welcome back', { command: 'chat' });
  await a.next((m) => m.body === 'welcome back');
});

test('refusals: a handshake refused with 403 is not retried; 503 (server full) backs off', { skip }, async (t) => {
  const s = await servers(t, {
    workers: 1,
    websocket: { allowed_origins: ['http://good.example'] },
    limits: { max_connections: 1 },
  });
  // Node's "ws" sends an Origin only when asked to.
  const withOrigin = (origin) => class extends WebSocket {
    constructor(url, protocols) { super(url, protocols, { origin }); }
  };
  const bad = connect(s, { WebSocket: withOrigin('http://evil.example') });
  await waitFor(() => bad.c.state === 'closed', 5000, 'the refused client to give up');
  assert.equal(bad.closes[0].status, 403);
  assert.equal(bad.reconnecting.length, 0);

  const first = connect(s, { WebSocket: withOrigin('http://good.example') });
  await waitFor(() => first.c.state === 'open');
  const second = connect(s, { WebSocket: withOrigin('http://good.example') });
  await waitFor(() => second.reconnecting.length >= 1, 5000, 'a 503 and a retry');
  assert.equal(second.reconnecting[0].status, 503);
  first.c.close();
  await waitFor(() => second.c.state === 'open', 5000, 'the second client to get in');
});

// The URL of the "ws" package's ES module entry (import.meta.resolve needs Node 20.6).
function wsModuleUrl() {
  const main = createRequire(import.meta.url).resolve('ws');
  return pathToFileURL(path.join(path.dirname(main), 'wrapper.mjs')).href;
}

test('readme: the Node example works as pasted, and reconnects after a reload', { skip }, async (t) => {
  // The handoff off, so that the reload drains it (1012) and it reconnects.
  const s = await servers(t, { handoff: { enabled: false } });
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const code = readme.slice(readme.indexOf('## In Node')).match(/```js\n([\s\S]*?)```/)[1]
    .replaceAll('ws://localhost:8081/ws', s.url)
    .replace("from './lhttp.js'", `from '${new URL('../lhttp.js', import.meta.url)}'`)
    .replace("from 'ws'", `from '${wsModuleUrl()}'`);
  const file = path.join(s.dir, 'hello.mjs');
  writeFileSync(file, code);
  const watcher = connect(s);
  await join(watcher, 'lobby');

  const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  t.after(() => child.kill());
  await waitFor(() => out.includes('#lobby <node> hello from Node'), 5000, `the example's output, so far: ${out}`);
  assert.match(out, /^connected$/m);
  const m = await watcher.next((x) => x.command === 'chat');
  assert.deepEqual([m.headers.nick, m.body], ['node', 'hello from Node']);
  s.reload();
  await waitFor(() => out.includes('connected again'), 5000, `"connected again", so far: ${out}`);
  watcher.c.publish('lobby', 'still there?', { command: 'chat', headers: { nick: 'watcher' } });
  await waitFor(() => out.includes('#lobby <watcher> still there?'), 5000, 'the example to get a message after the reload');
});

// ---- Identity ------------------------------------------------------------------------

const b64url = (x) => Buffer.from(x).toString('base64url');

// A compact HS256 JWT of `claims` signed with `secret`.
function mint(secret, claims, kid = 'k1') {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid }));
  const body = b64url(JSON.stringify(claims));
  return `${head}.${body}.${createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url')}`;
}

const API_TOKEN = 'sdk-api-token';

// Servers with auth on: an HS256 key (its secret in a file of a temporary directory),
// "user" (owner), "chat" (authenticated, subscribers, stamp_user) and "team" (token).
// Returns the servers plus token(sub, { expIn, channels }) and api(path, body).
async function authServers(t, auth = {}) {
  const keyDir = mkdtempSync(path.join(os.tmpdir(), 'lhttp-sdk-key-'));
  t.after(() => rmSync(keyDir, { recursive: true, force: true }));
  const secret = randomBytes(32).toString('base64url');
  writeFileSync(path.join(keyDir, 'jwt.secret'), `${secret}\n`, { mode: 0o600 });
  const s = await servers(t, {
    publish: { token: API_TOKEN },
    auth: { keys: [{ kid: 'k1', secret_file: path.join(keyDir, 'jwt.secret') }], ...auth },
    namespaces: {
      user: { subscribe: 'owner', publish: 'none' },
      chat: { subscribe: 'authenticated', publish: 'subscribers', stamp_user: true },
      team: { subscribe: 'token', publish: 'subscribers', stamp_user: true },
    },
  });
  s.token = (sub, { expIn = 3600, channels } = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return mint(secret, { sub, iat: now, exp: now + expIn, ...(channels ? { channels } : {}) });
  };
  s.api = async (what, body) => {
    const r = await fetch(`http://127.0.0.1:${s.port}${what}`, {
      method: 'POST', headers: { authorization: `Bearer ${API_TOKEN}` }, body: JSON.stringify(body),
    });
    return { status: r.status, body: await r.json() };
  };
  return s;
}

// A connected client that records its auth and unsubscribed events too.
async function signedIn(s, opts) {
  const rec = connect(s, opts);
  rec.auths = [];
  rec.unsubscribed = [];
  rec.c.on('auth', (a) => rec.auths.push(a));
  rec.c.on('unsubscribed', (u) => rec.unsubscribed.push(u));
  await waitFor(() => rec.c.state === 'open', 5000, 'the client to be signed in and open');
  return rec;
}

test('auth: a token for 42 is accepted first; user.42 is allowed, user.43 refused 403', { skip }, async (t) => {
  const s = await authServers(t);
  const a = await signedIn(s, { token: s.token('42') });
  assert.equal(a.c.user, '42');
  assert.equal(a.auths.length, 1);
  assert.ok(a.c.expires > Date.now() / 1000);
  assert.deepEqual(await a.c.subscribeAsync('user.42'), ['user.42']);
  const err = await a.c.subscribeAsync('user.43').then(() => null, (e) => e);
  assert.ok(err, 'user.43 was refused');
  assert.deepEqual([err.kind, err.code, err.inReplyTo, err.channels], ['server', 403, 'subscribe', ['user.43']]);
  assert.match(err.reason, /user\.43/);
  assert.deepEqual(a.c.channels, ['user.42']);
  // An anonymous client: refused where the rules want a user.
  const anon = connect(s);
  await waitFor(() => anon.c.state === 'open');
  await assert.rejects(anon.c.subscribeAsync('chat.lobby'), (e) => e.code === 403);
  assert.equal(anon.c.user, null);
  // A forged token (another secret) is refused, and without getToken the client stops.
  const forged = connect(s, { token: mint('x'.repeat(40), { sub: '42', exp: Math.floor(Date.now() / 1000) + 60 }) });
  await waitFor(() => forged.c.state === 'closed', 5000, 'the forged client to stop');
  assert.equal(forged.errors[0].code, 401);
  assert.equal(forged.closes[0].code, 4401);
});

test('auth-stamp: chat names come from the server: sender is the publisher\'s user id, not forgeable', { skip }, async (t) => {
  const s = await authServers(t);
  const alice = await signedIn(s, { getToken: async () => s.token('alice') });
  const bob = await signedIn(s, { getToken: async () => s.token('bob') });
  await alice.c.subscribeAsync('chat.room');
  await bob.c.subscribeAsync('chat.room');
  bob.c.publish('chat.room', 'hi, I am alice', { command: 'chat', headers: { sender: 'alice', nick: 'alice' } });
  const m = await alice.next((x) => x.command === 'chat');
  assert.equal(m.headers.sender, 'bob');
  assert.deepEqual(m.headerList.filter(([k]) => k.toLowerCase() === 'sender'), [['sender', 'bob']]);
  // The private room: a token whose channels claim lists it, and nobody else.
  const carol = await signedIn(s, { getToken: async () => s.token('carol') });
  const dave = await signedIn(s, { getToken: async () => s.token('dave', { channels: ['team.secret'] }) });
  await assert.rejects(carol.c.subscribeAsync('team.secret'), (e) => e.code === 403 && e.channels[0] === 'team.secret');
  await dave.c.subscribeAsync('team.secret');
  // carol, not subscribed, may not publish there (subscribers): refused, not delivered.
  carol.c.publish('team.secret', 'let me in', { command: 'chat' });
  await waitFor(() => carol.errors.some((e) => e.code === 403 && e.inReplyTo === 'chat'));
  dave.c.publish('team.secret', 'only us', { command: 'chat' });
  assert.equal((await dave.next((x) => x.command === 'chat')).body, 'only us');
});

test('auth-refresh: a short token is renewed on the open connection before it expires', { skip }, async (t) => {
  const s = await authServers(t, { expiry_grace_ms: 200 });
  let calls = 0;
  const a = await signedIn(s, { getToken: async () => s.token('42', { expIn: ++calls === 1 ? 3 : 3600 }) });
  assert.ok(a.auths[0].refreshInMs > 0 && a.auths[0].refreshInMs <= 3000, `refreshInMs ${a.auths[0].refreshInMs}`);
  await waitFor(() => a.auths.length === 2, 5000, 'the refresh');
  assert.equal(a.auths[1].refreshed, true);
  assert.equal(calls, 2);
  await a.c.subscribeAsync('user.42');
  // Past the first token's expiry and grace: still the same connection.
  await new Promise((r) => setTimeout(r, Math.max(0, (a.auths[0].expires + 1) * 1000 - Date.now()) + 400));
  assert.equal(a.c.state, 'open');
  assert.equal(a.opens, 1);
  assert.equal(a.closes.length, 0);
  assert.ok(await a.c.ping() >= 0);
});

test('auth-expiry: a token not renewed in time is closed with 4401; getToken gives a new one', { skip }, async (t) => {
  const s = await authServers(t, { expiry_grace_ms: 200, leeway_s: 0 });
  let calls = 0;
  // The first token lives 2 s and its renewal is slow: the server closes with 4401 first.
  const a = await signedIn(s, {
    getToken: async () => {
      calls++;
      if (calls === 2) await new Promise((r) => setTimeout(r, 4000));
      return s.token('42', { expIn: calls === 1 ? 2 : 3600 });
    },
  });
  await a.c.subscribeAsync('user.42');
  await waitFor(() => a.closes.length >= 1, 8000, 'the 4401 close');
  assert.equal(a.closes[0].code, 4401);
  assert.equal(a.closes[0].willReconnect, true);
  await waitFor(() => a.opens === 2 && a.c.state === 'open', 10000, 'the reconnection with a new token');
  assert.equal(a.c.user, '42');
  assert.deepEqual(await a.c.subscribeAsync('user.42'), ['user.42']); // taken again after the reconnection
});

test('auth-api: the server API disconnects with 4401 (reconnect), 4403 (stop) and unsubscribes', { skip }, async (t) => {
  const s = await authServers(t);
  let calls = 0;
  const a = await signedIn(s, { getToken: async () => { calls++; return s.token('42'); } });
  await a.c.subscribeAsync('user.42', 'chat.room');

  const r = await s.api('/api/unsubscribe', { user: '42', channel: 'chat.room' });
  assert.deepEqual([r.status, r.body.ok], [200, true]);
  await waitFor(() => a.unsubscribed.length === 1, 5000, 'the unsubscribed event');
  assert.equal(a.unsubscribed[0].channel, 'chat.room');
  assert.deepEqual(a.c.channels, ['user.42']);

  assert.equal((await s.api('/api/disconnect', { user: '42', code: 4401, reason: 'sign in again' })).status, 200);
  await waitFor(() => a.opens === 2 && a.c.state === 'open', 10000, 'a new token and a reconnection');
  assert.equal(a.closes[0].code, 4401);
  assert.equal(calls, 2, 'getToken was asked again');

  assert.equal((await s.api('/api/disconnect', { user: '42', reason: 'banned' })).status, 200);
  await waitFor(() => a.c.state === 'closed', 5000, 'the client to stop');
  assert.deepEqual([a.closes.at(-1).code, a.closes.at(-1).reason, a.closes.at(-1).willReconnect], [4403, 'banned', false]);
  assert.ok(a.errors.some((e) => e.kind === 'auth' && e.code === 4403));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(a.opens, 2, 'no reconnection after 4403');
});

// ---- History and recovery (issue 18) ---------------------------------------------------

const HIST_TOKEN = 'sdk-hist-token';

// Servers with JetStream and a history namespace "chat" (anyone may subscribe and
// publish; `size` messages per channel), and "room" without history. Resolves once every
// worker has its stream. Adds s.post(channel, body) (POST /publish, tried again while
// it answers 503: not stored, so not delivered) and s.ready(n) (waits for n more
// "stream ready" lines, for the workers a reload starts).
async function histServers(t, { size = 100, workers = 2, handoff = true } = {}) {
  const s = await servers(t, {
    workers,
    handoff: { enabled: handoff },
    publish: { token: HIST_TOKEN },
    namespaces: { chat: { subscribe: 'any', publish: 'any', history: { size } } },
  }, { jetstream: true });
  const readyLines = () => (s.log().match(/JetStream: stream LHTTP_chat ready/g) ?? []).length;
  let seen = 0;
  s.ready = async (n = workers) => {
    await waitFor(() => readyLines() >= seen + n, 10000, `${n} workers with their JetStream stream`);
    seen = readyLines();
  };
  s.post = async (channel, body) => {
    for (let tries = 0; ; tries++) {
      const r = await fetch(`http://127.0.0.1:${s.port}/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${HIST_TOKEN}` },
        body: `LHTTP/1.0 chat\r\npublish:${channel}\r\n\r\n${body}`,
      }).catch((e) => ({ status: 0, json: async () => ({ error: String(e) }) }));
      const answer = await r.json().catch(() => ({}));
      if (r.status === 200) return answer.offsets[channel];
      if ((r.status !== 503 && r.status !== 0) || tries > 200) throw new Error(`POST /publish: ${r.status} ${JSON.stringify(answer)}`);
      await new Promise((res) => setTimeout(res, 25));
    }
  };
  await s.ready();
  return s;
}

// A WebSocket class whose connections can be refused at will (they go to a closed
// port), and whose open sockets can be dropped: gate.open = false, gate.drop().
function gatedWebSocket(s) {
  const gate = { open: true, sockets: new Set() };
  gate.WebSocket = class extends WebSocket {
    constructor(url, protocols) {
      super(gate.open ? url : 'ws://127.0.0.1:1/ws', protocols);
      gate.sockets.add(this);
      this.on('close', () => gate.sockets.delete(this));
    }
  };
  gate.drop = () => { for (const ws of gate.sockets) ws.terminate(); };
  return gate;
}

// Records a client's recovered and gap events too.
function histClient(s, opts) {
  const rec = connect(s, opts);
  rec.recovered = [];
  rec.gaps = [];
  rec.c.on('recovered', (e) => rec.recovered.push(e));
  rec.c.on('gap', (e) => rec.gaps.push(e));
  return rec;
}

const chatBodies = (rec) => rec.messages.filter((m) => m.command === 'chat').map((m) => m.body);

test('history-recover: a client away while messages are published gets each of them once, in order, on its return', { skip }, async (t) => {
  const s = await histServers(t);
  const gate = gatedWebSocket(s);
  const a = histClient(s, { WebSocket: gate.WebSocket });
  await a.c.subscribeAsync('chat.room');
  await waitFor(() => a.c.position('chat.room') !== null, 5000, 'the subscribed reply');
  const first = a.c.position('chat.room');
  assert.match(first.epoch, /^[0-9a-f]{16}$/);
  for (let i = 1; i <= 3; i++) await s.post('chat.room', `m${i}`);
  await waitFor(() => chatBodies(a).length === 3, 5000, 'm1..m3 live');
  const live = a.messages.filter((m) => m.command === 'chat');
  assert.equal(live[0].prevOffset, first.offset);
  assert.ok(live.every((m, i) => i === 0 || m.prevOffset === live[i - 1].offset), 'a chain');
  assert.deepEqual(a.c.position('chat.room'), { epoch: first.epoch, offset: live[2].offset });

  gate.open = false;
  gate.drop();
  await waitFor(() => a.reconnecting.length >= 2, 5000, 'a refused attempt');
  for (let i = 4; i <= 8; i++) await s.post('chat.room', `m${i}`);
  gate.open = true;
  await waitFor(() => a.recovered.length === 1, 10000, 'the recovery');
  assert.equal(a.recovered[0].recovered, true);
  assert.equal(a.recovered[0].from, live[2].offset);
  for (let i = 9; i <= 10; i++) await s.post('chat.room', `m${i}`);
  await waitFor(() => chatBodies(a).length >= 10, 5000, 'm9, m10 live');
  assert.deepEqual(chatBodies(a), Array.from({ length: 10 }, (_, i) => `m${i + 1}`));
  assert.equal(a.gaps.length, 0);
  const errors = a.errors.filter((e) => e.kind !== 'transport'); // the refused attempts
  assert.equal(errors.length, 0, String(errors));
});

test('history-reload: through two reloads with publishes going on, a subscriber has every message once, in order', { skip }, async (t) => {
  // Without the handoff: the clients are drained (1012), reconnect and recover.
  const s = await histServers(t, { handoff: false });
  const a = histClient(s);
  const b = histClient(s);
  await a.c.subscribeAsync('chat.busy');
  await b.c.subscribeAsync('chat.busy');
  await waitFor(() => a.c.position('chat.busy') && b.c.position('chat.busy'), 5000, 'the subscribed replies');
  let n = 0;
  let publishing = true;
  const publisher = (async () => {
    while (publishing) await s.post('chat.busy', `n${++n}`);
  })();
  for (let r = 0; r < 2; r++) {
    await waitFor(() => chatBodies(a).length >= n - 1 && n > 5 * (r + 1), 5000, 'messages before the reload');
    const opens = a.opens;
    s.reload();
    await s.ready();
    await waitFor(() => a.opens > opens && b.opens > opens, 10000, 'both clients back');
  }
  await waitFor(() => a.recovered.length >= 2 && b.recovered.length >= 2, 10000, 'the recoveries');
  publishing = false;
  await publisher;
  const want = Array.from({ length: n }, (_, i) => `n${i + 1}`);
  await waitFor(() => chatBodies(a).length >= n && chatBodies(b).length >= n, 10000, `all ${n} messages`);
  for (const r of [a, b]) {
    assert.deepEqual(chatBodies(r), want);
    assert.ok(r.recovered.every((e) => e.recovered === true), JSON.stringify(r.recovered));
    assert.equal(r.gaps.length, 0, JSON.stringify(r.gaps));
  }
});

test('history-evicted: a client whose offset was evicted gets recovered:false and a gap, then live messages', { skip }, async (t) => {
  const s = await histServers(t, { size: 3, workers: 1 });
  const gate = gatedWebSocket(s);
  const a = histClient(s, { WebSocket: gate.WebSocket });
  await a.c.subscribeAsync('chat.small');
  await s.post('chat.small', 'seen');
  await waitFor(() => chatBodies(a).length === 1, 5000, 'the first message');
  const before = a.c.position('chat.small');
  gate.open = false;
  gate.drop();
  await waitFor(() => a.reconnecting.length >= 2, 5000, 'a refused attempt');
  let latest = 0;
  for (let i = 1; i <= 5; i++) latest = await s.post('chat.small', `missed${i}`);
  gate.open = true;
  await waitFor(() => a.recovered.length === 1, 10000, 'the recovery');
  assert.deepEqual(a.recovered[0], { channel: 'chat.small', recovered: false, epoch: before.epoch, offset: latest, from: before.offset });
  assert.deepEqual(a.gaps, [{ channel: 'chat.small', from: before.offset, to: latest, epoch: before.epoch, reason: 'recovery' }]);
  assert.deepEqual(chatBodies(a), ['seen'], 'nothing old: never a partial recovery');
  // The application reloads: the history holds the last 3.
  const h = await a.c.history('chat.small');
  assert.deepEqual(h.messages.map((m) => m.body), ['missed3', 'missed4', 'missed5']);
  await s.post('chat.small', 'after');
  await waitFor(() => chatBodies(a).length === 2, 5000, 'the live message');
  assert.equal(a.messages.at(-1).prevOffset, latest);
});

test('history-read: history() gives the last messages, with since and limit; 404 for a channel without history', { skip }, async (t) => {
  const s = await histServers(t);
  const offsets = [];
  for (let i = 1; i <= 6; i++) offsets.push(await s.post('chat.log', `l${i}`));
  const a = histClient(s);
  await waitFor(() => a.c.state === 'open');
  let h = await a.c.history('chat.log', { limit: 4 });
  assert.deepEqual(h.messages.map((m) => m.body), ['l3', 'l4', 'l5', 'l6']);
  assert.deepEqual(h.messages.map((m) => m.offset), offsets.slice(2));
  assert.equal(h.offset, offsets[5]);
  assert.match(h.epoch, /^[0-9a-f]{16}$/);
  h = await a.c.history('chat.log', { since: offsets[3] });
  assert.deepEqual(h.messages.map((m) => m.body), ['l5', 'l6']);
  h = await a.c.history('chat.empty');
  assert.deepEqual([h.messages.length, h.offset], [0, 0]);
  const err = await a.c.history('room.plain').then(() => null, (e) => e);
  assert.deepEqual([err?.code, err?.inReplyTo], [404, 'history']);
  // Seeded from the read, a subscription starts right after it: no gap, no duplicate.
  h = await a.c.history('chat.log', { limit: 2 });
  a.c.subscribe('chat.log', { since: h.offset, epoch: h.epoch });
  await waitFor(() => a.recovered.length === 1, 5000, 'the recovery from the read');
  assert.equal(a.recovered[0].recovered, true);
  await s.post('chat.log', 'l7');
  await waitFor(() => chatBodies(a).length === 1, 5000, 'l7');
  assert.deepEqual(chatBodies(a), ['l7'], 'the read\'s messages are not events');
  assert.equal(a.errors.length, 0, String(a.errors));
});
