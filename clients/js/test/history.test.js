// Unit tests of history and recovery against the fake WebSocket (the test plays lhttpd):
// positions from the subscribed reply and from each delivery's offset/epoch headers,
// resubscription with recover entries after every reconnect, the recovered and gap
// events (recovered:false, the server's gap message, a delivery that does not follow),
// duplicates dropped, history() reads (their messages kept out of the events, live ones
// around them delivered in order, refusals and closes), and channels without history
// left as they were.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { LhttpError, parseMessage } from '../lhttp.js';
import { FakeSocket, last, waitFor, client, closeAll } from './fake-socket.js';

afterEach(closeAll);

const E = '5f3e0c7a9b1d2e4f';
const E2 = '00000000000000aa';

const subscribed = (sock, ch, offset, { epoch = E, recovered } = {}) => sock.receive(
  `LHTTP/1.0 subscribed\r\nchannel:${ch}\r\nepoch:${epoch}\r\noffset:${offset}\r\n`
  + (recovered === undefined ? '' : `recovered:${recovered}\r\n`) + '\r\n');
const deliver = (sock, ch, offset, prev, body, epoch = E) => sock.receive(
  `LHTTP/1.0 chat\r\noffset:${offset}\r\nprev-offset:${prev}\r\nepoch:${epoch}\r\npublish:${ch}\r\n\r\n${body}`);
const historyEnd = (sock, ch, offset, count, epoch = E) => sock.receive(
  `LHTTP/1.0 history\r\nchannel:${ch}\r\nepoch:${epoch}\r\noffset:${offset}\r\ncount:${count}\r\n\r\n`);
const pongAll = (sock) => {
  for (const m of sock.messages) if (m.command === 'ping') sock.receive(`LHTTP/1.0 pong\r\n\r\n${m.body}`);
};
const bodies = (events) => events('message').map((m) => m.body);

// Drops the connection with 1012 and opens the next one; returns the new socket.
async function reconnect(c) {
  const before = last();
  before.drop(1012, 'service restart');
  await waitFor(() => last() !== before);
  last().open();
  return last();
}

test('parseMessage exposes offset, prevOffset and epoch (null without them)', () => {
  const m = parseMessage(`LHTTP/1.0 chat\r\noffset:12\r\nprev-offset:7\r\nepoch:${E}\r\npublish:chat.a\r\n\r\nhi`);
  assert.deepEqual([m.offset, m.prevOffset, m.epoch], [12, 7, E]);
  const plain = parseMessage('LHTTP/1.0 chat\r\npublish:room\r\n\r\nhi');
  assert.deepEqual([plain.offset, plain.prevOffset, plain.epoch], [null, null, null]);
  assert.equal(parseMessage('LHTTP/1.0 x\r\noffset:-1\r\n\r\n').offset, null);
  assert.equal(parseMessage('LHTTP/1.0 x\r\noffset:012\r\n\r\n').offset, null);
});

test('recovery: the position follows the subscribed reply and each delivery; a reconnect resubscribes with it', async () => {
  const { c, events } = client();
  c.subscribe('chat.a', 'room');
  let sock = last();
  sock.open();
  assert.equal(sock.messages[0].headers.recover, undefined, 'nothing to recover on the first subscribe');
  subscribed(sock, 'chat.a', 10);
  assert.deepEqual(c.position('chat.a'), { epoch: E, offset: 10 });
  assert.equal(c.position('room'), null, 'room has no history');
  deliver(sock, 'chat.a', 14, 10, 'one');
  deliver(sock, 'chat.a', 20, 14, 'two');
  const [m1, m2] = events('message');
  assert.deepEqual([m1.offset, m1.prevOffset, m1.epoch, m2.offset], [14, 10, E, 20]);
  assert.deepEqual(c.position('chat.a'), { epoch: E, offset: 20 });

  sock = await reconnect(c);
  const [sub] = sock.messages;
  assert.equal(sub.headers.subscribe, 'chat.a room');
  assert.equal(sub.headers.recover, `chat.a,20,${E}`);
  // What was missed comes first, then the reply.
  deliver(sock, 'chat.a', 25, 20, 'three');
  subscribed(sock, 'chat.a', 25, { recovered: 'true' });
  assert.deepEqual(events('recovered'), [{ channel: 'chat.a', recovered: true, epoch: E, offset: 25, from: 20 }]);
  assert.equal(events('gap').length, 0);
  assert.deepEqual(bodies(events), ['one', 'two', 'three']);
  assert.deepEqual(c.position('chat.a'), { epoch: E, offset: 25 });

  // Every reconnect, not only the first.
  sock = await reconnect(c);
  assert.equal(sock.messages[0].headers.recover, `chat.a,25,${E}`);
  c.close();
});

test('recovery: recovered:false is a recovered event and a gap; the position jumps to the latest offset', async () => {
  const { c, events, log } = client();
  c.subscribe('chat.a');
  let sock = last();
  sock.open();
  subscribed(sock, 'chat.a', 3);
  sock = await reconnect(c);
  subscribed(sock, 'chat.a', 900, { recovered: 'false', epoch: E2 });
  assert.deepEqual(events('recovered'), [{ channel: 'chat.a', recovered: false, epoch: E2, offset: 900, from: 3 }]);
  assert.deepEqual(events('gap'), [{ channel: 'chat.a', from: 3, to: 900, epoch: E2, reason: 'recovery' }]);
  const order = log.map(([e]) => e).filter((e) => e === 'recovered' || e === 'gap');
  assert.deepEqual(order, ['recovered', 'gap']);
  assert.deepEqual(c.position('chat.a'), { epoch: E2, offset: 900 });
  deliver(sock, 'chat.a', 901, 900, 'live', E2);
  assert.equal(events('gap').length, 1, 'the live message follows the new position');
  sock = await reconnect(c);
  assert.equal(sock.messages[0].headers.recover, `chat.a,901,${E2}`);
  c.close();
});

test('gap: the server\'s gap message is a gap event; the chain goes on from its "to"', () => {
  const { c, events } = client();
  c.subscribe('chat.a');
  const sock = last();
  sock.open();
  subscribed(sock, 'chat.a', 5);
  deliver(sock, 'chat.a', 6, 5, 'a');
  sock.receive('LHTTP/1.0 gap\r\nchannel:chat.a\r\nfrom:6\r\nto:40\r\n\r\n');
  deliver(sock, 'chat.a', 41, 40, 'b');
  assert.deepEqual(events('gap'), [{ channel: 'chat.a', from: 6, to: 40, epoch: E, reason: 'server' }]);
  assert.deepEqual(bodies(events), ['a', 'b']);
  assert.equal(events('message').some((m) => m.command === 'gap'), false);
  c.close();
});

test('order: a duplicate is dropped; a delivery that does not follow the position is a gap; a new epoch too', () => {
  const { c, events } = client();
  c.subscribe('chat.a');
  const sock = last();
  sock.open();
  subscribed(sock, 'chat.a', 5);
  deliver(sock, 'chat.a', 6, 5, 'a');
  deliver(sock, 'chat.a', 6, 5, 'a again');
  deliver(sock, 'chat.a', 4, 2, 'older');
  assert.deepEqual(bodies(events), ['a']);
  deliver(sock, 'chat.a', 9, 8, 'after a hole');
  assert.deepEqual(events('gap'), [{ channel: 'chat.a', from: 6, to: 8, epoch: E, reason: 'order' }]);
  deliver(sock, 'chat.a', 1, 0, 'new stream', E2);
  assert.deepEqual(events('gap')[1], { channel: 'chat.a', from: 9, to: 0, epoch: E2, reason: 'epoch' });
  assert.deepEqual(bodies(events), ['a', 'after a hole', 'new stream']);
  assert.deepEqual(c.position('chat.a'), { epoch: E2, offset: 1 });
  c.close();
});

test('a message published to two history channels counts for the one whose position it follows', () => {
  const { c } = client();
  c.subscribe('chat.a', 'chat.b');
  const sock = last();
  sock.open();
  subscribed(sock, 'chat.a', 5);
  subscribed(sock, 'chat.b', 4);
  sock.receive(`LHTTP/1.0 chat\r\noffset:7\r\nprev-offset:4\r\nepoch:${E}\r\npublish:chat.a chat.b\r\n\r\nx`);
  sock.receive(`LHTTP/1.0 chat\r\noffset:6\r\nprev-offset:5\r\nepoch:${E}\r\npublish:chat.a chat.b\r\n\r\nx`);
  assert.deepEqual([c.position('chat.a').offset, c.position('chat.b').offset], [6, 7]);
  c.close();
});

test('channels without history: the resubscription is as before, messages have no offset', async () => {
  const { c, events } = client();
  c.subscribe('room1', 'room2');
  let sock = last();
  sock.open();
  sock.receive('LHTTP/1.0 chat\r\npublish:room1\r\n\r\nhi');
  assert.equal(events('message')[0].offset, null);
  sock = await reconnect(c);
  assert.deepEqual(sock.messages[0].headerList, [['subscribe', 'room1 room2']]);
  assert.equal(events('recovered').length + events('gap').length, 0);
  c.close();
});

test('subscribe(channel, { since, epoch }) recovers from that position at once; unsubscribe forgets it', async () => {
  const { c, events } = client();
  last().open();
  c.subscribe('chat.a', { since: 42, epoch: E });
  let sock = last();
  assert.deepEqual(sock.messages[0].headerList, [['subscribe', 'chat.a'], ['recover', `chat.a,42,${E}`]]);
  deliver(sock, 'chat.a', 43, 42, 'missed');
  subscribed(sock, 'chat.a', 43, { recovered: 'true' });
  assert.equal(events('recovered')[0].recovered, true);
  assert.deepEqual(bodies(events), ['missed']);
  c.unsubscribe('chat.a');
  assert.equal(c.position('chat.a'), null);
  c.subscribe('chat.a');
  assert.deepEqual(sock.messages.at(-1).headerList, [['subscribe', 'chat.a']]);
  assert.throws(() => c.subscribe('chat.b', { since: -1, epoch: E }), TypeError);
  assert.throws(() => c.subscribe('chat.b', { since: 1 }), TypeError);
  assert.throws(() => c.subscribe('chat.b', { since: 1, epoch: 'a,b' }), TypeError);
  // The server ending a subscription forgets its position too.
  subscribed(sock, 'chat.a', 50);
  sock.receive('LHTTP/1.0 unsubscribed\r\nchannel:chat.a\r\nreason:rules\r\n\r\n');
  assert.equal(c.position('chat.a'), null);
  sock = await reconnect(c);
  assert.equal(sock.messages.length, 0);
  c.close();
});

test('recover entries stay under the header line limit: many channels go in several subscribe messages', async () => {
  const { c } = client();
  const names = Array.from({ length: 200 }, (_, i) => `chat.room-number-${i}`);
  c.subscribe(names);
  let sock = last();
  sock.open();
  for (const n of names) subscribed(sock, n, 1000000 + names.indexOf(n));
  sock = await reconnect(c);
  const subs = sock.messages.filter((m) => m.command === 'subscribe');
  assert.ok(subs.length > 1);
  const seen = [];
  for (const m of subs) {
    assert.ok(m.headers.subscribe.length < 3600 && m.headers.recover.length < 3600);
    const chans = m.headers.subscribe.split(' ');
    assert.deepEqual(m.headers.recover.split(' ').map((e) => e.split(',')[0]), chans, 'each message recovers its own channels');
    seen.push(...chans);
  }
  assert.deepEqual(seen, names);
  assert.equal(subs[0].headers.recover.split(' ')[0], `chat.room-number-0,1000000,${E}`);
  c.close();
});

test('history(): resolves at the final reply with the messages; they are not message events', async () => {
  const { c, events } = client();
  c.subscribe('chat.a');
  const sock = last();
  sock.open();
  subscribed(sock, 'chat.a', 9);
  const p = c.history('chat.a', { limit: 2, since: 3 });
  const [read, ping] = sock.messages.slice(-2);
  assert.equal(read.command, 'history');
  assert.deepEqual(read.headerList, [['channel', 'chat.a'], ['limit', '2'], ['since', '3']]);
  assert.equal(ping.command, 'ping');
  // A live message just before the read's block, then the block and its reply.
  deliver(sock, 'chat.a', 10, 9, 'live');
  deliver(sock, 'chat.a', 8, 5, 'old-1');
  deliver(sock, 'chat.a', 10, 8, 'old-2');
  historyEnd(sock, 'chat.a', 10, 2);
  const got = await p;
  assert.equal(got.channel, 'chat.a');
  assert.deepEqual(got.messages.map((m) => [m.body, m.offset]), [['old-1', 8], ['old-2', 10]]);
  assert.deepEqual([got.epoch, got.offset], [E, 10]);
  assert.deepEqual(bodies(events), ['live'], 'only the live message is an event');
  assert.deepEqual(c.position('chat.a'), { epoch: E, offset: 10 });
  pongAll(sock);
  assert.equal(events('message').length, 1, 'the read\'s pong is no event');
  c.close();
});

test('history(): a delivery of another kind between held ones releases them as live, in order', async () => {
  const { c, events } = client();
  c.subscribe('chat.a', 'room');
  const sock = last();
  sock.open();
  subscribed(sock, 'chat.a', 1);
  const p = c.history('chat.b');
  pongAll(sock); // the server took the read: it waits for JetStream
  deliver(sock, 'chat.a', 2, 1, 'live-1');
  sock.receive('LHTTP/1.0 chat\r\npublish:room\r\n\r\nplain');
  deliver(sock, 'chat.a', 3, 2, 'live-2');
  assert.deepEqual(bodies(events), ['live-1', 'plain']);
  historyEnd(sock, 'chat.b', 0, 0);
  assert.deepEqual((await p).messages, []);
  assert.deepEqual(bodies(events), ['live-1', 'plain', 'live-2']);
  c.close();
});

test('history(): refusals reject the read the server had not taken; others go on', async () => {
  const { c, events } = client();
  const sock = last();
  sock.open();
  const slow = c.history('chat.a');
  const bad = c.history('plain.x');
  // In order: the first read is taken (its pong), the second refused (404) before its pong.
  sock.receive(`LHTTP/1.0 pong\r\n\r\n${sock.messages[1].body}`);
  sock.receive('LHTTP/1.0 error\r\ncode:404\r\nreason:not a history channel\r\nin-reply-to:history\r\n\r\n');
  sock.receive(`LHTTP/1.0 pong\r\n\r\n${sock.messages[3].body}`);
  const err = await bad.then(() => null, (e) => e);
  assert.ok(err instanceof LhttpError);
  assert.deepEqual([err.kind, err.code, err.inReplyTo], ['server', 404, 'history']);
  assert.equal(events('error').length, 0, 'a refused read rejects its promise rather than emitting');
  deliver(sock, 'chat.a', 1, 0, 'm1');
  historyEnd(sock, 'chat.a', 1, 1);
  assert.deepEqual((await slow).messages.map((m) => m.body), ['m1']);
  await assert.rejects(c.history('bad name'), TypeError);
  await assert.rejects(c.history('chat.a', { limit: 0 }), TypeError);
  c.close();
});

test('history(): made while down it waits for the connection; a close rejects it; close() too', async () => {
  const { c } = client();
  const early = c.history('chat.a', { limit: 5 });
  let sock = last();
  sock.open();
  assert.deepEqual(sock.messages.map((m) => m.command), ['history', 'ping']);
  historyEnd(sock, 'chat.a', 0, 0);
  assert.deepEqual((await early).messages, []);
  const lost = c.history('chat.a').then(() => null, (e) => e);
  sock = await reconnect(c);
  const err = await lost;
  assert.equal(err.kind, 'transport');
  const pending = c.history('chat.a').then(() => null, (e) => e);
  c.close();
  assert.equal((await pending).kind, 'usage');
  await assert.rejects(c.history('chat.a'), (e) => e.kind === 'usage');
});

test('history(): no reply in timeoutMs rejects; the late reply is not taken for the next read', async () => {
  const { c } = client();
  const sock = last();
  sock.open();
  const p = c.history('chat.a', { timeoutMs: 20 });
  assert.equal((await p.then(() => null, (e) => e)).kind, 'transport');
  const next = c.history('chat.a');
  deliver(sock, 'chat.a', 1, 0, 'late');
  historyEnd(sock, 'chat.a', 1, 1); // the first read's reply
  deliver(sock, 'chat.a', 1, 0, 'mine');
  historyEnd(sock, 'chat.a', 1, 1);
  assert.deepEqual((await next).messages.map((m) => m.body), ['mine']);
  c.close();
});

test('a history read and a recovery of the same channel: the recovered messages are events, the read\'s are not', async () => {
  const { c, events } = client();
  c.subscribe('chat.a');
  let sock = last();
  sock.open();
  subscribed(sock, 'chat.a', 2);
  sock = await reconnect(c);
  const p = c.history('chat.a', { limit: 1 });
  deliver(sock, 'chat.a', 3, 2, 'recovered');
  subscribed(sock, 'chat.a', 3, { recovered: 'true' });
  deliver(sock, 'chat.a', 3, 2, 'read');
  historyEnd(sock, 'chat.a', 3, 1);
  assert.deepEqual((await p).messages.map((m) => m.body), ['read']);
  assert.deepEqual(bodies(events), ['recovered']);
  assert.equal(events('recovered')[0].recovered, true);
  assert.ok(FakeSocket.all.length >= 2);
  c.close();
});
