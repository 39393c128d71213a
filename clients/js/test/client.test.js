// Unit tests of LhttpClient against a fake WebSocket that the test drives: events,
// (un)subscription, the send queue, and the reconnection policy for each close code.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { LhttpClient, LhttpError } from '../lhttp.js';
import { FakeSocket, last, sleep, waitFor, client, closeAll } from './fake-socket.js';

afterEach(closeAll);

test('connects at once, offers the lhttp subprotocol, reports open', () => {
  const { c, events } = client();
  assert.equal(c.state, 'connecting');
  assert.equal(last().url, 'ws://test/ws');
  assert.deepEqual(last().protocols, ['lhttp']);
  last().open();
  assert.equal(c.state, 'open');
  assert.deepEqual(events('open'), [{ reconnected: false, attempt: 0 }]);
  c.close();
});

test('without a WebSocket implementation the constructor says what to pass', () => {
  const saved = globalThis.WebSocket; // Node 22 and browsers have one
  globalThis.WebSocket = undefined;
  try {
    assert.throws(() => new LhttpClient('ws://x/'), /WebSocket/);
  } finally {
    globalThis.WebSocket = saved;
  }
});

test('subscriptions and publishes made before open are sent after open, in order', () => {
  const { c } = client();
  c.subscribe('room1', ['room2 room3']);
  assert.equal(c.publish('room1', 'early', { command: 'chat', headers: { nick: 'ann' } }), false);
  last().open();
  const [sub, pub] = last().messages;
  assert.equal(sub.command, 'subscribe');
  assert.equal(sub.headers.subscribe, 'room1 room2 room3');
  assert.equal(pub.command, 'chat');
  assert.equal(pub.headers.publish, 'room1');
  assert.equal(pub.headers.nick, 'ann');
  assert.equal(pub.body, 'early');
  assert.equal(c.publish(['room1', 'room2'], 'now'), true);
  const now = last().messages[2];
  assert.equal(now.command, 'message');
  assert.equal(now.headers.publish, 'room1 room2');
  assert.deepEqual(c.channels, ['room1', 'room2', 'room3']);
  c.close();
});

test('subscribe sends only new channels; unsubscribe only subscribed ones', () => {
  const { c } = client();
  last().open();
  c.subscribe('a', 'b');
  c.subscribe('b');
  c.subscribe('a', 'c');
  c.unsubscribe('b', 'zzz');
  c.unsubscribe('zzz');
  assert.deepEqual(last().messages.map((m) => [m.command, m.headers.subscribe ?? m.headers.unsubscribe]),
    [['subscribe', 'a b'], ['subscribe', 'c'], ['unsubscribe', 'b']]);
  assert.deepEqual(c.channels, ['a', 'c']);
  assert.throws(() => c.subscribe('bad name!'), TypeError);
  assert.throws(() => c.publish([], 'x'), TypeError);
  c.close();
});

test('message events carry command, headers with colons, body and parts', () => {
  const { c, events } = client();
  last().open();
  last().receive('LHTTP/1.0 chat\r\npublish:room1\r\nurl: http://h:1/p\r\nmultipart:0\r\n\r\nk:v\r\n\r\nbody');
  const [m] = events('message');
  assert.equal(m.command, 'chat');
  assert.equal(m.headers.url, 'http://h:1/p');
  assert.deepEqual(m.channels, ['room1']);
  assert.equal(m.parts[0].headers.k, 'v');
  assert.equal(m.parts[0].body, 'body');
  // Binary messages arrive as ArrayBuffers.
  last().receive(new Uint8Array([...new TextEncoder().encode('LHTTP/1.0 b\r\n\r\n'), 0xff]).buffer);
  assert.deepEqual([...events('message')[1].bodyBytes], [0xff]);
  c.close();
});

test('an error reply is an error event of kind "server", not a message', () => {
  const { c, events } = client();
  last().open();
  last().receive('LHTTP/1.0 error\r\ncode:429\r\nreason:too many subscriptions\r\nin-reply-to:subscribe\r\n\r\n');
  last().receive('not lhttp');
  assert.equal(events('message').length, 0);
  const [server, parse] = events('error');
  assert.ok(server instanceof LhttpError);
  assert.equal(server.kind, 'server');
  assert.equal(server.code, 429);
  assert.equal(server.reason, 'too many subscriptions');
  assert.equal(server.inReplyTo, 'subscribe');
  assert.equal(parse.kind, 'parse');
  c.close();
});

test('UTF-8 messages go as text, others as binary', () => {
  const { c } = client();
  last().open();
  c.send('t', null, 'héllo');
  c.send('b', null, new Uint8Array([0xff, 0xfe]));
  assert.equal(typeof last().sent[0], 'string');
  assert.ok(last().sent[1] instanceof Uint8Array);
  c.close();
});

test('1012 (drained after a reload): reconnects within 100 ms and resubscribes', async () => {
  const { c, events } = client({ minDelayMs: 500 });
  c.subscribe('a', 'b');
  const first = last();
  first.open();
  first.drop(1012, 'service restart');
  assert.equal(c.state, 'reconnecting');
  const [closed] = events('close');
  assert.deepEqual([closed.code, closed.willReconnect], [1012, true]);
  const [r] = events('reconnecting');
  assert.equal(r.attempt, 1);
  assert.ok(r.delayMs < 100, `delay ${r.delayMs}`);
  await waitFor(() => last() !== first);
  c.publish('a', 'queued');
  last().open();
  assert.deepEqual(events('open')[1], { reconnected: true, attempt: 1 });
  const [sub, pub] = last().messages;
  assert.equal(sub.headers.subscribe, 'a b');
  assert.equal(pub.body, 'queued');
  c.close();
});

test('1001 (going away): first retry within minDelayMs, then back-off', async () => {
  const { c, events } = client({ minDelayMs: 40, maxDelayMs: 1000 });
  last().open();
  last().drop(1001, 'going away');
  assert.ok(events('reconnecting')[0].delayMs < 40);
  await waitFor(() => FakeSocket.all.length === 2);
  last().drop(1006); // refused: the server is not back yet
  const d = events('reconnecting')[1].delayMs;
  assert.ok(d >= 40 && d <= 80, `delay ${d}`);
  c.close();
});

test('back-off doubles with jitter and stops at maxDelayMs', async () => {
  const { c, events } = client({ minDelayMs: 10, maxDelayMs: 40 });
  for (let i = 0; i < 5; i++) {
    await waitFor(() => FakeSocket.all.length === i + 1);
    last().drop(1006);
  }
  const delays = events('reconnecting').map((r) => r.delayMs);
  const bounds = [[5, 10], [10, 20], [20, 40], [20, 40], [20, 40]];
  delays.forEach((d, i) => assert.ok(d >= bounds[i][0] && d <= bounds[i][1], `attempt ${i + 1}: ${d}`));
  assert.deepEqual(events('reconnecting').map((r) => r.attempt), [1, 2, 3, 4, 5]);
  c.close();
});

test('4008 (slow consumer), 1011 and 1006 reconnect with back-off', async () => {
  for (const code of [4008, 1011, 1006, 1013]) {
    const { c, events } = client({ minDelayMs: 10 });
    last().open();
    last().drop(code);
    const [r] = events('reconnecting');
    assert.ok(r && r.delayMs >= 5 && r.delayMs <= 10, `code ${code}: ${r?.delayMs}`);
    await waitFor(() => FakeSocket.all.length === 2);
    c.close();
  }
});

test('no reconnection after 1008 (policy), 1000, or a client bug (1002/1003/1007/1009)', async () => {
  for (const code of [1008, 1000, 1002, 1003, 1007, 1009]) {
    const { c, events } = client();
    last().open();
    last().drop(code, 'no');
    assert.equal(c.state, 'closed', `code ${code}`);
    assert.deepEqual(events('close').map((e) => [e.code, e.willReconnect]), [[code, false]]);
    assert.equal(events('reconnecting').length, 0);
    await sleep(30);
    assert.equal(FakeSocket.all.length, 1, `code ${code}`);
    assert.throws(() => c.send('x'), LhttpError);
  }
});

test('a refused handshake: 503 backs off, 403 stops', () => {
  let { c, events } = client();
  last().refuse(503);
  assert.equal(events('reconnecting').length, 1);
  assert.equal(events('error')[0].status, 503);
  c.close();
  ({ c, events } = client());
  last().refuse(403);
  assert.equal(c.state, 'closed');
  assert.deepEqual(events('close').map((e) => [e.status, e.willReconnect]), [[403, false]]);
});

test('shouldReconnect can overrule the policy either way', () => {
  let { c, events } = client({ shouldReconnect: (e) => (e.code === 1008 ? true : undefined) });
  last().open();
  last().drop(1008);
  assert.equal(events('reconnecting').length, 1);
  c.close();
  ({ c, events } = client({ shouldReconnect: () => false }));
  last().open();
  last().drop(1012);
  assert.equal(c.state, 'closed');
});

test('maxRetries ends the attempts; reconnect:false never starts them', async () => {
  let { c, events } = client({ maxRetries: 2, minDelayMs: 1, maxDelayMs: 2 });
  for (let i = 0; i < 3; i++) {
    await waitFor(() => FakeSocket.all.length === i + 1);
    last().drop(1006);
  }
  assert.equal(c.state, 'closed');
  assert.equal(events('reconnecting').length, 2);
  assert.equal(events('close').at(-1).willReconnect, false);
  ({ c, events } = client({ reconnect: false }));
  last().open();
  last().drop(1012);
  assert.equal(c.state, 'closed');
});

test('the attempt counter restarts only after a connection stayed up stableMs', async () => {
  const { c, events } = client({ minDelayMs: 10, maxDelayMs: 1000, stableMs: 50 });
  last().drop(1006);
  await waitFor(() => FakeSocket.all.length === 2);
  last().open();
  last().drop(1006); // up for less than stableMs: still attempt 2
  assert.equal(events('reconnecting')[1].attempt, 2);
  await waitFor(() => FakeSocket.all.length === 3);
  last().open();
  await sleep(60);
  last().drop(1006);
  assert.equal(events('reconnecting')[2].attempt, 1);
  c.close();
});

test('close() ends the connection for good and drops the queue', async () => {
  const { c, events } = client();
  c.publish('a', 'never sent');
  last().open();
  const sock = last();
  c.close(1000, 'bye');
  assert.deepEqual(sock.closedWith, [1000, 'bye']);
  assert.equal(c.state, 'closed');
  assert.deepEqual(events('close').map((e) => [e.code, e.willReconnect]), [[1000, false]]);
  await sleep(10);
  assert.equal(events('close').length, 1);
  assert.equal(FakeSocket.all.length, 1);
  assert.throws(() => c.publish('a', 'late'), /closed/);
  c.close(); // twice is fine
});

test('close() from a close handler stops the reconnection', async () => {
  const { c, events } = client();
  c.on('close', () => c.close());
  last().open();
  last().drop(1012);
  await sleep(150);
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(events('reconnecting').length, 0);
});

test('the queue is bounded by maxQueue', () => {
  const { c } = client({ maxQueue: 2 });
  c.send('a');
  c.send('b');
  assert.throws(() => c.send('c'), (e) => e.kind === 'usage');
  c.close();
});

test('a handshake that does not finish in connectTimeoutMs is retried', async () => {
  const { c, events } = client({ connectTimeoutMs: 20 });
  await waitFor(() => FakeSocket.all.length === 2);
  assert.equal(events('close')[0].code, 1006);
  assert.match(events('error')[0].message, /timed out/);
  c.close();
});

test('ping() resolves with the round trip when the pong comes', async () => {
  const { c, events } = client();
  last().open();
  const p = c.ping();
  const ping = last().messages[0];
  assert.equal(ping.command, 'ping');
  last().receive(`LHTTP/1.0 pong\r\n\r\n${ping.body}`);
  assert.ok(typeof (await p) === 'number');
  assert.equal(events('message').length, 0);
  const lost = c.ping();
  last().drop(1012);
  await assert.rejects(lost, LhttpError);
  c.close();
});

test('a throwing handler does not stop the others', () => {
  const saved = globalThis.reportError;
  const reported = [];
  globalThis.reportError = (e) => reported.push(e);
  try {
    const { c, events } = client();
    c.on('open', () => { throw new Error('app bug'); });
    let after = false;
    c.on('open', () => { after = true; });
    last().open();
    assert.ok(after);
    assert.equal(events('open').length, 1);
    assert.equal(reported[0].message, 'app bug');
    c.close();
  } finally {
    globalThis.reportError = saved;
  }
});

test('on() returns a function that removes the handler; unknown events are refused', () => {
  const { c } = client();
  let n = 0;
  const off = c.on('open', () => n++);
  off();
  last().open();
  assert.equal(n, 0);
  assert.throws(() => c.on('opened', () => {}), TypeError);
  c.close();
});
