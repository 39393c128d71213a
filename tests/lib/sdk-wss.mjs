// sdk-wss: the JavaScript SDK (clients/js) over wss:// in Node, with the "ws" package and
// a private CA (wsOptions: { ca }), for tls.bats. Two clients: one subscribes, the other
// publishes; prints `received BODY` and exits 0, or prints why and exits 1.
// Usage: node sdk-wss.mjs URL CA_FILE
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const sdkDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../clients/js');
const { WebSocket } = createRequire(path.join(sdkDir, 'package.json'))('ws');
const { LhttpClient } = await import(path.join(sdkDir, 'lhttp.js'));

const [url, caFile] = process.argv.slice(2);
const wsOptions = { ca: readFileSync(caFile) };
const fail = (why) => { console.log(`failed ${why}`); process.exit(1); };
setTimeout(() => fail('timeout'), 10000).unref();

const sub = new LhttpClient(url, { WebSocket, wsOptions, reconnect: false });
sub.on('error', (e) => fail(`sub: ${e.message}`));
sub.on('message', (m) => {
  if (m.command !== 'hello') return;
  console.log(`received ${typeof m.body === 'string' ? m.body : new TextDecoder().decode(m.body)}`);
  sub.close();
  pub.close();
  process.exit(0);
});
let pub;
sub.on('open', () => {
  sub.subscribe('sdk.tls');
  // The subscription is in place once a ping sent after it comes back.
  pub = new LhttpClient(url, { WebSocket, wsOptions, reconnect: false });
  pub.on('error', (e) => fail(`pub: ${e.message}`));
  pub.on('open', () => {
    const again = setInterval(() => pub.publish('sdk.tls', 'over wss', { command: 'hello' }), 200);
    again.unref();
  });
});
