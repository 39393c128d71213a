// Unit tests of the LHTTP codec: encodeMessage and parseMessage, against the grammar of
// PROTOCOL.md section 1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeMessage, parseMessage, isValidChannel } from '../lhttp.js';

const text = (bytes) => new TextDecoder().decode(bytes);

test('encodes a command, headers in order and a body with CRLF line ends', () => {
  const out = encodeMessage('chat', { publish: 'room1 room2', nick: 'ann' }, 'hello');
  assert.equal(text(out), 'LHTTP/1.0 chat\r\npublish:room1 room2\r\nnick:ann\r\n\r\nhello');
});

test('encodes headers given as a list of pairs or a Map, leaving out null values', () => {
  assert.equal(text(encodeMessage('x', [['a', '1'], ['a', '2'], ['b', null]])), 'LHTTP/1.0 x\r\na:1\r\na:2\r\n\r\n');
  assert.equal(text(encodeMessage('x', new Map([['k', 3]]))), 'LHTTP/1.0 x\r\nk:3\r\n\r\n');
  assert.equal(text(encodeMessage('ping')), 'LHTTP/1.0 ping\r\n\r\n');
});

test('encodes a binary body byte for byte', () => {
  const body = new Uint8Array([0, 255, 13, 10, 0x80]);
  const out = encodeMessage('blob', null, body);
  assert.deepEqual([...out.subarray(out.length - 5)], [...body]);
});

test('refuses a bad command, header name or value', () => {
  assert.throws(() => encodeMessage('', {}), TypeError);
  assert.throws(() => encodeMessage('two words'), TypeError);
  assert.throws(() => encodeMessage('a:b'), TypeError);
  assert.throws(() => encodeMessage('x'.repeat(65)), TypeError);
  assert.throws(() => encodeMessage('x', { 'bad key': 'v' }), TypeError);
  assert.throws(() => encodeMessage('x', { 'k:': 'v' }), TypeError);
  assert.throws(() => encodeMessage('x', { k: 'a\r\nsubscribe:evil' }), TypeError);
  assert.throws(() => encodeMessage('x', { k: 'a\nb' }), TypeError);
  assert.throws(() => encodeMessage('x', { k: 'a\0' }), TypeError);
  assert.throws(() => encodeMessage('x', null, 42), TypeError);
});

test('parses values that contain colons, and trims only spaces and tabs', () => {
  const m = parseMessage('LHTTP/1.0 chat\r\nupstream: POST http://host:8080/x \r\nurl:\tws://a:1/b\t\r\n\r\nbody');
  assert.equal(m.command, 'chat');
  assert.equal(m.headers.upstream, 'POST http://host:8080/x');
  assert.equal(m.headers.url, 'ws://a:1/b');
  assert.equal(m.body, 'body');
});

test('header names are case-insensitive; the first occurrence wins; all are kept', () => {
  const m = parseMessage('LHTTP/1.0 x\r\nNick:a\r\nNICK:b\r\n\r\n');
  assert.equal(m.headers.nick, 'a');
  assert.deepEqual(m.headerList, [['Nick', 'a'], ['NICK', 'b']]);
});

test('a body keeps header-like text and empty lines verbatim', () => {
  const m = parseMessage('LHTTP/1.0 chat\r\npublish:room1\r\n\r\npublish:x\r\n\r\n');
  assert.equal(m.headers.publish, 'room1');
  assert.deepEqual(m.channels, ['room1']);
  assert.equal(m.body, 'publish:x\r\n\r\n');
});

test('messages without headers, without an empty line, with bare LF or empty values', () => {
  let m = parseMessage('LHTTP/1.0 ping');
  assert.equal(m.command, 'ping');
  assert.equal(m.body, '');
  assert.deepEqual(m.headerList, []);
  m = parseMessage('LHTTP/1.0 chat\npublish:room1\n');
  assert.equal(m.headers.publish, 'room1');
  assert.equal(m.body, '');
  m = parseMessage('LHTTP/1.0 chat\nsubscribe:  a  b \npublish:\nx:   \n\nhi\n');
  assert.deepEqual(m.headers, Object.assign(Object.create(null), { subscribe: 'a  b', publish: '', x: '' }));
  assert.deepEqual(m.channels, []);
  assert.equal(m.body, 'hi\n');
  m = parseMessage('LHTTP/1.0 chat\r\npublish: a\t b \r\n\r\n');
  assert.deepEqual(m.channels, ['a', 'b']);
});

test('parses bytes and ArrayBuffers, keeping non-UTF-8 bodies in bodyBytes', () => {
  const raw = new Uint8Array([...new TextEncoder().encode('LHTTP/1.0 bin\r\n\r\n'), 0xff, 0, 0xfe]);
  for (const data of [raw, raw.buffer, Buffer.from(raw)]) {
    const m = parseMessage(data);
    assert.equal(m.command, 'bin');
    assert.deepEqual([...m.bodyBytes], [0xff, 0, 0xfe]);
  }
});

test('round trip: what encodeMessage writes, parseMessage reads back', () => {
  const body = 'héllo 🌍\r\n\r\nk:v';
  const m = parseMessage(encodeMessage('chat', { publish: 'r', 'x-time': '12:30:00' }, body));
  assert.equal(m.body, body);
  assert.equal(m.headers['x-time'], '12:30:00');
  assert.equal(m.parts, null);
});

test('refuses what is not LHTTP', () => {
  for (const bad of ['', 'HTTP/1.1 200 OK\r\n', 'LHTTP/1.1 x', 'LHTTP/1.0  x', 'LHTTP/1.0 x y',
    'LHTTP/1.0 x\r\nno colon\r\n', 'LHTTP/1.0 x\r\n:v\r\n', 'LHTTP/1.0 x\r\nbad key:v\r\n',
    'LHTTP/1.0 x\r\nk:a\rb\r\n']) {
    assert.throws(() => parseMessage(bad), Error, JSON.stringify(bad));
  }
});

test('channel names follow PROTOCOL.md section 4', () => {
  for (const ok of ['room1', 'chat.room-42', 'user@example=1', 'a_b+c~d:e;f', 'A.b.C']) {
    assert.ok(isValidChannel(ok), ok);
  }
  for (const bad of ['', 'a b', 'a*', 'a.>', '.a', 'a.', 'a..b', 'room/1', 'café', 'x'.repeat(256), 7]) {
    assert.ok(!isValidChannel(bad), String(bad));
  }
});
