// Unit tests of presence against the fake WebSocket (the test plays lhttpd): presence()
// and presenceStats() send their command and a ping, resolve with the answer of their
// channel (the list parsed, truncated), reject with the server's refusal (an error that
// comes before the ping's pong) or when the connection closes; join and leave messages
// become one event per entry, in headers or batched in a JSON body.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { LhttpError } from '../lhttp.js';
import { last, waitFor, client, closeAll } from './fake-socket.js';

afterEach(closeAll);

const pongAll = (sock) => {
  for (const m of sock.messages) if (m.command === 'ping') sock.receive(`LHTTP/1.0 pong\r\n\r\n${m.body}`);
};

test('presence() resolves with the count, users, truncated and the parsed list', async () => {
  const { c } = client();
  const sock = last();
  sock.open();
  await waitFor(() => c.state === 'open');
  const p = c.presence('room.a');
  const q = c.presenceStats('room.a');
  const sent = sock.messages.filter((m) => m.command === 'presence' || m.command === 'presence-stats');
  assert.deepEqual(sent.map((m) => [m.command, m.headers.channel]), [['presence', 'room.a'], ['presence-stats', 'room.a']]);
  pongAll(sock);
  sock.receive('LHTTP/1.0 presence-stats\r\nchannel:room.a\r\ncount:3\r\nusers:2\r\n\r\n');
  sock.receive('LHTTP/1.0 presence\r\nchannel:room.a\r\ncount:3\r\nusers:2\r\ntruncated:true\r\n\r\n'
    + '[{"client":"n-1-1","user":"ann","info":{"a":1},"node":"n"},{"client":"n-1-2","user":"bob","info":null,"node":"n"}]');
  assert.deepEqual(await q, { channel: 'room.a', count: 3, users: 2 });
  const r = await p;
  assert.equal(r.count, 3);
  assert.equal(r.users, 2);
  assert.equal(r.truncated, true);
  assert.deepEqual(r.clients.map((e) => [e.user, e.info]), [['ann', { a: 1 }], ['bob', null]]);
});

test('presence() rejects with the server refusal, and when the connection closes first', async () => {
  const { c } = client();
  let sock = last();
  sock.open();
  await waitFor(() => c.state === 'open');
  const refused = c.presence('room.b');
  sock.receive('LHTTP/1.0 error\r\ncode:403\r\nreason:presence of "room.b" is for its subscribers\r\nin-reply-to:presence\r\n\r\n');
  await assert.rejects(refused, (e) => e instanceof LhttpError && e.code === 403);
  const cut = c.presenceStats('room.b');
  pongAll(sock);
  sock.drop(1012, 'restart');
  await assert.rejects(cut, (e) => e instanceof LhttpError && e.kind === 'transport');
  await assert.rejects(c.presence('bad channel'), TypeError);
});

test('join and leave: one event per entry, from headers or a batch body', async () => {
  const { c, events } = client();
  const sock = last();
  sock.open();
  await waitFor(() => c.state === 'open');
  sock.receive('LHTTP/1.0 join\r\nchannel:room.c\r\nuser:ann\r\nclient:n-1-1\r\ninfo:{"name":"Ann"}\r\n\r\n');
  sock.receive('LHTTP/1.0 leave\r\nchannel:room.c\r\ncount:2\r\n\r\n'
    + '[{"client":"n-1-2","user":"bob","info":null,"node":"n"},{"client":"n-2-1","user":"cy","info":{"x":2},"node":"m"}]');
  assert.deepEqual(events('join'), [{ channel: 'room.c', user: 'ann', client: 'n-1-1', info: { name: 'Ann' } }]);
  assert.deepEqual(events('leave').map((e) => [e.user, e.client, e.info]), [['bob', 'n-1-2', null], ['cy', 'n-2-1', { x: 2 }]]);
  assert.equal(events('message').length, 0, 'not messages');
  // A worker that died: one leave for all its clients, by their id prefix.
  sock.receive('LHTTP/1.0 leave\r\nchannel:room.c\r\ngone:00000000000000ab-42-\r\n\r\n');
  assert.deepEqual(events('leave')[2], { channel: 'room.c', user: '', client: '', info: null, gone: '00000000000000ab-42-' });
  // A publication that uses the command is an ordinary message.
  sock.receive('LHTTP/1.0 join\r\npublish:room.c\r\n\r\nhi');
  assert.equal(events('message').length, 1);
});
