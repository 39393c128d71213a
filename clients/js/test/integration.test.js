// Integration tests of the SDK against a real lhttpd and nats-server (started by
// harness.js on free loopback ports): pub/sub both ways across workers, multipart and
// binary bodies, error replies, reconnection after a reload (1012) and after a restart
// (1001, then back-off while the server is down), the handshake refusals (403 stops,
// 503 backs off), and the Node example of README.md as pasted. Skipped when the prerequisites are missing, unless
// LH_REQUIRE_INTEGRATION=1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
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
  const s = await servers(t);
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
  const s = await servers(t);
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
