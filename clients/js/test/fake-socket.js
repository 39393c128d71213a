// The fake WebSocket of the client's unit tests: it mimics the browser WebSocket API and
// the test plays the server. Not a test file itself (the test script names *.test.js only).
import { LhttpClient, parseMessage } from '../lhttp.js';

export class FakeSocket {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.readyState = 0;
    this.closedWith = null;
    FakeSocket.all.push(this);
  }
  send(data) {
    if (this.readyState !== 1) throw new Error('not open');
    this.sent.push(data);
  }
  close(code, reason) {
    this.closedWith = [code, reason];
    this.readyState = 3;
    setTimeout(() => this.onclose?.({ code: code ?? 1005, reason: reason ?? '', wasClean: true }), 0);
  }
  // Server side:
  open() { this.readyState = 1; this.onopen?.({}); }
  receive(data) { this.onmessage?.({ data }); }
  drop(code, reason = '') { this.readyState = 3; this.onclose?.({ code, reason, wasClean: code !== 1006 }); }
  refuse(status) {
    this.readyState = 3;
    this.onerror?.({ message: `Unexpected server response: ${status}` });
    this.onclose?.({ code: 1006, reason: '', wasClean: false });
  }
  get messages() { return this.sent.map((d) => parseMessage(d)); }
}

export const last = () => FakeSocket.all[FakeSocket.all.length - 1];
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(cond, ms = 2000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met in ${ms} ms: ${cond}`);
    await sleep(2);
  }
}

const EVENTS = ['open', 'message', 'close', 'reconnecting', 'error', 'auth', 'unsubscribed', 'recovered', 'gap', 'join', 'leave'];

const made = [];

/** A client on a fresh FakeSocket list, with every event recorded: events(name) lists
 *  the arguments of one event, log has them all in order. */
export function client(opts = {}) {
  FakeSocket.all = [];
  const c = new LhttpClient('ws://test/ws', { WebSocket: FakeSocket, minDelayMs: 20, maxDelayMs: 80, ...opts });
  made.push(c);
  const log = [];
  for (const ev of EVENTS) c.on(ev, (arg) => log.push([ev, arg]));
  return { c, log, events: (name) => log.filter(([e]) => e === name).map(([, a]) => a) };
}

/** Closes every client made by client(), so that a failed test leaves no timer running
 *  (use as afterEach). */
export function closeAll() {
  for (const c of made.splice(0)) c.close();
}
