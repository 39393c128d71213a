// Unit tests of multipart messages: MultipartBuilder counts offsets in UTF-8 bytes, and
// parseMessage / parseMultipart split a body at those offsets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MultipartBuilder, encodeMessage, parseMessage, parseMultipart } from '../lhttp.js';

const text = (bytes) => new TextDecoder().decode(bytes);

test('offsets count UTF-8 bytes, not JavaScript string units', () => {
  // "é" is 2 bytes and 1 unit; "🌍" is 4 bytes and 2 units.
  const mp = new MultipartBuilder().add({ name: 'é' }, 'a🌍').add(null, 'b');
  const { header, offsets, body } = mp.build();
  // Part 1: "name:é\r\n" (9 bytes) + "\r\n" (2) + "a🌍" (5) = 16 bytes.
  assert.deepEqual(offsets, [0, 16]);
  assert.equal(header, '0 16');
  assert.equal(body.length, 16 + 2 + 1);
  assert.equal(text(body), 'name:é\r\n\r\na🌍\r\nb');
  assert.equal(mp.size, 2);
});

test('a message built with a MultipartBuilder body carries the multipart header', () => {
  const mp = new MultipartBuilder().add({ 'content-type': 'text/plain' }, 'one').add({ n: '2' }, 'two');
  const out = text(encodeMessage('upload', { publish: 'r' }, mp));
  assert.equal(out, 'LHTTP/1.0 upload\r\npublish:r\r\nmultipart:0 30\r\n\r\n'
    + 'content-type:text/plain\r\n\r\none' + 'n:2\r\n\r\ntwo');
});

test('parsing gives each part its headers and body; round trip with binary parts', () => {
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 0xff, 13, 10]);
  const mp = new MultipartBuilder()
    .add({ 'Content-Type': 'text/plain; charset=utf-8', note: 'a:b:c' }, 'héllo\r\n\r\nstill part 1')
    .add({ name: 'logo.png' }, png)
    .add({}, '');
  const m = parseMessage(encodeMessage('files', null, mp));
  assert.equal(m.parts.length, 3);
  assert.equal(m.parts[0].headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(m.parts[0].headers.note, 'a:b:c');
  assert.deepEqual(m.parts[0].headerList[0], ['Content-Type', 'text/plain; charset=utf-8']);
  assert.equal(m.parts[0].body, 'héllo\r\n\r\nstill part 1');
  assert.equal(m.parts[1].headers.name, 'logo.png');
  assert.deepEqual([...m.parts[1].bodyBytes], [...png]);
  assert.deepEqual(m.parts[2].headerList, []);
  assert.equal(m.parts[2].body, '');
});

test('parts start at offset 0, each needs its empty line; LF line ends work too', () => {
  const body = 'a:1\r\n\r\nA|b:2\n\nB';
  const parts = parseMultipart('0 9', body);
  assert.equal(parts.length, 2);
  assert.deepEqual([parts[0].headers.a, parts[0].body], ['1', 'A|']);
  assert.deepEqual([parts[1].headers.b, parts[1].body], ['2', 'B']);
  assert.equal(parseMultipart('0', '\r\n')[0].body, '');
  assert.equal(parseMultipart('0', 'k:v'), null, 'no empty line');
  assert.equal(parseMultipart('3', 'xx\n\r\n'), null, 'a preamble');
});

test('a bad multipart header gives parts null, and the message is still readable', () => {
  const body = 'a:1\r\n\r\nA';
  for (const bad of ['', 'x', '-1', '0 0', '0 5 2', '0 99', '0 10', '1.5', '0x1', '00', '0 07', '0 2', '1']) {
    assert.equal(parseMultipart(bad, body), null, JSON.stringify(bad));
  }
  const m = parseMessage(`LHTTP/1.0 x\r\nmultipart:0 99\r\n\r\n${body}`);
  assert.equal(m.parts, null);
  assert.equal(m.body, body);
});

test('a part header name is checked like a message header name', () => {
  assert.throws(() => new MultipartBuilder().add({ 'bad key': 'v' }, 'x'), TypeError);
  assert.throws(() => new MultipartBuilder().add({ k: 'v\r\n' }, 'x'), TypeError);
  assert.throws(() => encodeMessage('x', null, new MultipartBuilder()), /at least one part/);
});

test("PROTOCOL.md's example: body of 49 bytes, offsets 0 40", () => {
  const body = 'content-type:text/plain\r\nname:a\r\n\r\nhello\r\nk:v\r\n\r\n';
  assert.equal(new TextEncoder().encode(body).length, 49);
  const m = parseMessage(`LHTTP/1.0 files\r\nmultipart: 0 40\r\n\r\n${body}`);
  assert.equal(m.parts.length, 2);
  assert.deepEqual(m.parts[0].headerList, [['content-type', 'text/plain'], ['name', 'a']]);
  assert.equal(m.parts[0].body, 'hello');
  assert.deepEqual(m.parts[1].headerList, []);
  assert.equal(m.parts[1].body, 'k:v\r\n\r\n');
  // The builder writes the same bytes.
  const built = new MultipartBuilder().add([['content-type', 'text/plain'], ['name', 'a']], 'hello').add(null, 'k:v\r\n\r\n').build();
  assert.equal(built.header, '0 40');
  assert.equal(text(built.body), body);
});
