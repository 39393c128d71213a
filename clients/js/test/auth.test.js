// Unit tests of the client's identity handling against the fake WebSocket: the token
// (option or getToken()) goes in `auth` before anything else, the refresh before expiry
// and on the server's `refresh`, close codes 4401 (new token, reconnect) and 4403 (stop),
// subscriptions refused with 403, and the server's `unsubscribed`.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { LhttpError, CloseCode, refreshDelay } from '../lhttp.js';
import { FakeSocket, last, sleep, waitFor, client, closeAll } from './fake-socket.js';

afterEach(closeAll);

const now = () => Math.floor(Date.now() / 1000);
const authOk = (sock, user, expires = 0) => sock.receive(`LHTTP/1.0 auth\r\nuser:${user}\r\nexpires:${expires}\r\n\r\n`);
const authError = (sock, code, reason) => sock.receive(`LHTTP/1.0 error\r\ncode:${code}\r\nreason:${reason}\r\nin-reply-to:auth\r\n\r\n`);
const subError = (sock, code, reason) => sock.receive(`LHTTP/1.0 error\r\ncode:${code}\r\nreason:${reason}\r\nin-reply-to:subscribe\r\n\r\n`);
// Plays a server that processes in order: answers the pings sent so far (pongs echo
// the body), from the nth message on.
function pong(sock, from = 0) {
  for (const m of sock.messages.slice(from)) if (m.command === 'ping') sock.receive(`LHTTP/1.0 pong\r\n\r\n${m.body}`);
}
const commands = (sock) => sock.messages.map((m) => m.command);
// A getToken() that hands out tok-1, tok-2, ... and counts its calls.
function tokens() {
  const f = async () => `tok-${++f.calls}`;
  f.calls = 0;
  return f;
}

test('CloseCode names 4401 and 4403', () => {
  assert.equal(CloseCode.UNAUTHORIZED, 4401);
  assert.equal(CloseCode.DISCONNECTED, 4403);
});

test('token: auth is the first message; nothing else goes before its reply', () => {
  const { c, events, log } = client({ token: 'jwt-1' });
  c.subscribe('chat.lobby');
  c.publish('chat.lobby', 'early');
  const sock = last();
  assert.equal(sock.url, 'ws://test/ws', 'the token is not in the URL');
  sock.open();
  assert.deepEqual(sock.messages.map((m) => [m.command, m.headers.token]), [['auth', 'jwt-1']]);
  assert.equal(c.state, 'connecting');
  assert.equal(events('open').length, 0);
  assert.equal(c.publish('chat.lobby', 'still early'), false, 'queued until the auth reply');
  const exp = now() + 3600;
  authOk(sock, '42', exp);
  assert.equal(c.state, 'open');
  assert.equal(c.user, '42');
  assert.equal(c.expires, exp);
  assert.deepEqual(log.map(([e]) => e).filter((e) => e === 'auth' || e === 'open'), ['auth', 'open']);
  const [a] = events('auth');
  assert.deepEqual([a.user, a.expires, a.refreshed], ['42', exp, false]);
  assert.equal(a.refreshInMs, null, 'no getToken: nothing to refresh with');
  const sent = sock.messages;
  assert.deepEqual(sent.map((m) => m.command), ['auth', 'subscribe', 'ping', 'message', 'message']);
  assert.equal(sent[1].headers.subscribe, 'chat.lobby');
  assert.deepEqual(sent.slice(3).map((m) => m.body), ['early', 'still early']);
  c.close();
});

test('without a token: no auth and no extra ping, as before', () => {
  const { c, events } = client();
  c.subscribe('a');
  last().open();
  assert.deepEqual(commands(last()), ['subscribe']);
  assert.equal(c.user, null);
  assert.equal(events('auth').length, 0);
  c.close();
});

test('getToken: called first, while the handshake runs; auth waits for it', async () => {
  let release;
  const getToken = () => new Promise((r) => { release = r; });
  const { c, events } = client({ getToken });
  c.subscribe('a');
  last().open();
  await sleep(5);
  assert.deepEqual(last().sent, [], 'nothing before the token');
  release('from-getToken');
  await waitFor(() => last().sent.length === 1);
  assert.equal(last().messages[0].headers.token, 'from-getToken');
  authOk(last(), 'ann', 0);
  assert.equal(c.state, 'open');
  assert.equal(events('auth')[0].refreshInMs, null, 'expires 0: never');
  c.close();
});

test('close() while getToken() runs: the token that comes later is not sent', async () => {
  let release;
  const { c, events } = client({ getToken: () => new Promise((r) => { release = r; }) });
  const sock = last();
  sock.open();
  c.close();
  release('late');
  await sleep(5);
  assert.deepEqual(sock.sent, []);
  assert.equal(events('error').length, 0);
});

test('a token refused at connect (401): 4401, getToken() again, reconnect with back-off', async () => {
  const getToken = tokens();
  const { c, events } = client({ getToken, minDelayMs: 10, maxDelayMs: 20 });
  last().open();
  await waitFor(() => last().sent.length === 1);
  authError(last(), 401, 'token expired');
  const [err] = events('error');
  assert.equal(err.kind, 'server');
  assert.deepEqual([err.code, err.inReplyTo], [401, 'auth']);
  assert.deepEqual(events('close').map((e) => [e.code, e.willReconnect]), [[4401, true]]);
  assert.match(events('close')[0].reason, /token expired/);
  const [r] = events('reconnecting');
  assert.ok(r.delayMs >= 5 && r.delayMs <= 10, `delay ${r.delayMs}`);
  await waitFor(() => FakeSocket.all.length === 2);
  last().open();
  await waitFor(() => last().sent.length === 1);
  assert.equal(last().messages[0].headers.token, 'tok-2');
  assert.equal(getToken.calls, 2);
  authOk(last(), 'ann');
  assert.equal(c.state, 'open');
  assert.equal(events('open').length, 1);
  c.close();
});

test('a static token refused at connect: no getToken, so the client stops', () => {
  const { c, events } = client({ token: 'bad' });
  last().open();
  authError(last(), 401, 'bad signature');
  assert.equal(c.state, 'closed');
  assert.deepEqual(events('close').map((e) => [e.code, e.willReconnect]), [[4401, false]]);
});

test('getToken() failing or returning no string: an auth error, then back-off', async () => {
  let calls = 0;
  const getToken = async () => {
    calls++;
    if (calls === 1) throw new Error('login service down');
    if (calls === 2) return '';
    return 'good';
  };
  const { c, events } = client({ getToken, minDelayMs: 5, maxDelayMs: 10 });
  last().open();
  await waitFor(() => events('reconnecting').length === 1);
  assert.equal(events('error')[0].kind, 'auth');
  assert.match(events('error')[0].message, /login service down/);
  await waitFor(() => FakeSocket.all.length === 2);
  last().open();
  await waitFor(() => events('reconnecting').length === 2);
  assert.match(events('error')[1].message, /non-empty string/);
  await waitFor(() => FakeSocket.all.length === 3);
  last().open();
  await waitFor(() => last().sent.length === 1);
  assert.equal(last().messages[0].headers.token, 'good');
  c.close();
});

test('an invalid token option is refused at once', () => {
  assert.throws(() => client({ token: 'a\r\nsubscribe:x' }), TypeError);
  assert.throws(() => client({ token: '' }), TypeError);
  assert.throws(() => client({ getToken: 'nope' }), TypeError);
});

test('refreshDelay: 80 % or 30 s before expiry, whichever is earlier, at least half, never past', () => {
  assert.equal(refreshDelay(3600e3), 2880e3);
  assert.equal(refreshDelay(600e3), 480e3);
  assert.equal(refreshDelay(60e3), 30e3);
  assert.equal(refreshDelay(40e3), 20e3);
  assert.equal(refreshDelay(10e3), 5e3);
  assert.equal(refreshDelay(0), null);
  assert.equal(refreshDelay(-5), null);
});

test('refresh: scheduled from the auth reply, then getToken() and auth on the same connection', async () => {
  const getToken = tokens();
  const { c, events } = client({ getToken });
  const sock = last();
  sock.open();
  await waitFor(() => sock.sent.length === 1);
  authOk(sock, 'ann', now() + 3600);
  const long = events('auth')[0].refreshInMs;
  assert.ok(long > 2870e3 && long <= 2880e3, `refreshInMs ${long}`);
  // A token that expires in about 2 s: renewed within 1.5 s.
  c.subscribe('x');
  sock.receive(`LHTTP/1.0 auth\r\nuser:ann\r\nexpires:${now() + 2}\r\n\r\n`);
  const short = events('auth')[1].refreshInMs;
  assert.ok(short >= 500 && short <= 1500, `refreshInMs ${short}`);
  const before = sock.sent.length;
  await waitFor(() => sock.messages.slice(before).some((m) => m.command === 'auth'), 3000);
  const again = sock.messages.slice(before).find((m) => m.command === 'auth');
  assert.equal(again.headers.token, 'tok-2');
  assert.equal(FakeSocket.all.length, 1, 'no reconnection');
  authOk(sock, 'ann', now() + 3600);
  const [, , third] = events('auth');
  assert.deepEqual([third.user, third.refreshed], ['ann', true]);
  assert.equal(c.state, 'open');
  c.close();
});

test("refresh: the server's refresh message asks for a new token at once", async () => {
  const getToken = tokens();
  const { c, events } = client({ getToken });
  const sock = last();
  sock.open();
  await waitFor(() => sock.sent.length === 1);
  authOk(sock, 'ann', now() + 3600);
  sock.receive(`LHTTP/1.0 refresh\r\nexpires:${now()}\r\n\r\n`);
  await waitFor(() => sock.messages.filter((m) => m.command === 'auth').length === 2);
  assert.equal(sock.messages.at(-1).headers.token, 'tok-2');
  assert.equal(events('message').length, 0, 'refresh is not a message');
  // A refused refresh keeps the connection and its identity; the client tries again.
  authError(sock, 403, 'the token is for another user');
  assert.equal(events('error').at(-1).code, 403);
  assert.equal(c.state, 'open');
  assert.equal(c.user, 'ann');
  await waitFor(() => sock.messages.filter((m) => m.command === 'auth').length === 3, 2500);
  assert.equal(sock.messages.at(-1).headers.token, 'tok-3');
  c.close();
});

test('refresh without getToken: an auth error says the token cannot be renewed', () => {
  const { c, events } = client({ token: 'only-one' });
  last().open();
  authOk(last(), 'ann', now() + 60);
  last().receive(`LHTTP/1.0 refresh\r\nexpires:${now()}\r\n\r\n`);
  assert.equal(events('error')[0].kind, 'auth');
  c.close();
});

test('close 4401: getToken() for a new token, then reconnect with the normal back-off', async () => {
  const getToken = tokens();
  const { c, events } = client({ getToken, minDelayMs: 10, maxDelayMs: 20 });
  c.subscribe('chat.a');
  last().open();
  await waitFor(() => last().sent.length === 1);
  authOk(last(), 'ann', now() + 3600);
  last().drop(4401, 'token expired');
  assert.deepEqual(events('close').map((e) => [e.code, e.willReconnect]), [[4401, true]]);
  const [r] = events('reconnecting');
  assert.ok(r.delayMs >= 5 && r.delayMs <= 10, `delay ${r.delayMs}`);
  await waitFor(() => FakeSocket.all.length === 2);
  last().open();
  await waitFor(() => last().sent.length === 1);
  assert.equal(getToken.calls, 2);
  assert.deepEqual(last().messages.map((m) => [m.command, m.headers.token]), [['auth', 'tok-2']]);
  authOk(last(), 'ann', now() + 3600);
  assert.deepEqual(commands(last()), ['auth', 'subscribe', 'ping']);
  assert.deepEqual(events('open').map((o) => o.reconnected), [false, true]);
  c.close();
});

test('a reconnection after another close keeps a token that is still valid', async () => {
  const getToken = tokens();
  const { c } = client({ getToken, minDelayMs: 10, maxDelayMs: 20 });
  last().open();
  await waitFor(() => last().sent.length === 1);
  authOk(last(), 'ann', now() + 3600);
  last().drop(1012);
  await waitFor(() => FakeSocket.all.length === 2);
  last().open();
  await sleep(5);
  assert.equal(last().messages[0].headers.token, 'tok-1');
  assert.equal(getToken.calls, 1);
  c.close();
});

test('close 4401 without getToken: the client stops', () => {
  const { c, events } = client({ token: 't' });
  last().open();
  authOk(last(), 'ann', 0);
  last().drop(4401, 'expired');
  assert.equal(c.state, 'closed');
  assert.equal(events('close')[0].willReconnect, false);
});

test('close 4403 (disconnected by the server API): no reconnection, a clear error and close', async () => {
  const getToken = tokens();
  const { c, events, log } = client({ getToken });
  last().open();
  await waitFor(() => last().sent.length === 1);
  authOk(last(), 'ann', 0);
  last().drop(4403, 'banned');
  assert.equal(c.state, 'closed');
  const err = events('error')[0];
  assert.ok(err instanceof LhttpError);
  assert.deepEqual([err.kind, err.code, err.reason], ['auth', 4403, 'banned']);
  assert.match(err.message, /banned/);
  assert.deepEqual(events('close').map((e) => [e.code, e.reason, e.willReconnect]), [[4403, 'banned', false]]);
  assert.deepEqual(log.map(([e]) => e).slice(-2), ['error', 'close']);
  assert.equal(events('reconnecting').length, 0);
  await sleep(50);
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(getToken.calls, 1);
});

test('subscribeAsync: resolves when the server took it, rejects a 403 with code, reason and channels', async () => {
  const { c, events } = client({ token: 't' });
  last().open();
  authOk(last(), 'carol', 0);
  const sock = last();
  const ok = c.subscribeAsync('chat.lobby');
  const refused = c.subscribeAsync('team.secret');
  assert.deepEqual(sock.messages.slice(1).map((m) => [m.command, m.headers.subscribe ?? m.body]),
    [['subscribe', 'chat.lobby'], ['ping', 'lhttp-sub-1'], ['subscribe', 'team.secret'], ['ping', 'lhttp-sub-2']]);
  // In order: the first subscribe's pong, then the second's refusal, then its pong.
  sock.receive('LHTTP/1.0 pong\r\n\r\nlhttp-sub-1');
  subError(sock, 403, 'not allowed to subscribe to team.secret');
  sock.receive('LHTTP/1.0 pong\r\n\r\nlhttp-sub-2');
  assert.deepEqual(await ok, ['chat.lobby']);
  const err = await refused.then(() => null, (e) => e);
  assert.ok(err instanceof LhttpError);
  assert.deepEqual([err.kind, err.code, err.reason, err.inReplyTo, err.channels],
    ['server', 403, 'not allowed to subscribe to team.secret', 'subscribe', ['team.secret']]);
  assert.deepEqual(c.channels, ['chat.lobby'], 'the refused channel is gone');
  assert.equal(events('error')[0], err, 'and it is an error event too');
  assert.equal(events('message').length, 0, 'the barrier pongs are not messages');
  assert.deepEqual(await c.subscribeAsync('chat.lobby'), ['chat.lobby'], 'already taken: at once');
  c.close();
});

test('subscribeAsync: a refusal goes to its own message even when the reason names no channel', async () => {
  const { c } = client({ token: 't' });
  last().open();
  authOk(last(), 'carol', 0);
  const sock = last();
  const a = c.subscribeAsync('a');
  const b = c.subscribeAsync('b');
  subError(sock, 403, 'forbidden'); // for a: nothing answered before it
  pong(sock);
  await assert.rejects(a, (e) => e.code === 403 && e.channels[0] === 'a');
  assert.deepEqual(await b, ['b']);
  assert.deepEqual(c.channels, ['b']);
  c.close();
});

test('subscribe() with a token is tracked too: a 403 drops the channel; others stay', () => {
  const { c, events } = client({ token: 't' });
  c.subscribe('chat.lobby', 'team.secret');
  last().open();
  authOk(last(), 'carol', 0);
  subError(last(), 403, 'subscribe to "team.secret" refused');
  pong(last());
  assert.deepEqual(events('error')[0].channels, ['chat.lobby', 'team.secret'], 'one message: all or nothing');
  assert.deepEqual(c.channels, []);
  c.close();
});

test('untracked (no token): a 403 to subscribe drops the channels its reason names', () => {
  const { c, events } = client();
  last().open();
  c.subscribe('chat.lobby');
  c.subscribe('chat');
  last().receive('LHTTP/1.0 error\r\ncode:403\r\nreason:subscribe to chat.lobby: authentication required\r\nin-reply-to:subscribe\r\n\r\n');
  assert.deepEqual(events('error')[0].channels, ['chat.lobby']);
  assert.deepEqual(c.channels, ['chat']);
  c.close();
});

test('subscribeAsync while disconnected waits for the connection and its resubscription', async () => {
  const { c } = client({ token: 't', minDelayMs: 5, maxDelayMs: 10 });
  const p = c.subscribeAsync('room');
  last().drop(1006);
  await waitFor(() => FakeSocket.all.length === 2);
  last().open();
  authOk(last(), 'ann', 0);
  assert.deepEqual(commands(last()), ['auth', 'subscribe', 'ping']);
  pong(last());
  assert.deepEqual(await p, ['room']);
  c.close();
});

test('subscribeAsync: close() and unsubscribe() reject what is still waiting', async () => {
  const { c } = client({ token: 't' });
  const a = c.subscribeAsync('a');
  const b = c.subscribeAsync('b');
  c.unsubscribe('a');
  await assert.rejects(a, (e) => e.kind === 'usage');
  c.close();
  await assert.rejects(b, (e) => e.kind === 'usage');
  await assert.rejects(c.subscribeAsync('c'), (e) => e.kind === 'usage');
});

test("unsubscribed: the server's message ends the local subscription and is an event", () => {
  const { c, events } = client({ token: 't', minDelayMs: 5 });
  c.subscribe('chat.a', 'chat.b');
  last().open();
  authOk(last(), 'ann', 0);
  last().receive('LHTTP/1.0 unsubscribed\r\nchannel:chat.a\r\nreason:banned from the room\r\n\r\n');
  assert.deepEqual(events('unsubscribed'), [{ channel: 'chat.a', reason: 'banned from the room' }]);
  assert.deepEqual(c.channels, ['chat.b']);
  assert.equal(events('message').length, 0);
  c.close();
});

test('a publication that uses the command auth, refresh or unsubscribed is a plain message', () => {
  const { c, events } = client({ token: 't' });
  last().open();
  authOk(last(), 'ann', 0);
  last().receive('LHTTP/1.0 auth\r\npublish:x\r\nuser:mallory\r\nexpires:1\r\n\r\n');
  last().receive('LHTTP/1.0 unsubscribed\r\npublish:x\r\nchannel:x\r\n\r\n');
  last().receive('LHTTP/1.0 refresh\r\npublish:x\r\n\r\n');
  assert.deepEqual(events('message').map((m) => m.command), ['auth', 'unsubscribed', 'refresh']);
  assert.equal(c.user, 'ann');
  assert.equal(events('auth').length, 1);
  c.close();
});

test('no auth reply within connectTimeoutMs: the attempt fails and is retried', async () => {
  const { c, events } = client({ token: 't', connectTimeoutMs: 30 });
  last().open();
  await waitFor(() => FakeSocket.all.length === 2);
  assert.match(events('error')[0].message, /did not answer auth/);
  assert.equal(events('open').length, 0);
  c.close();
});
