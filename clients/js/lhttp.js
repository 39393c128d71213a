// lhttp.js: the LHTTP client for lhttpd. One ES module, no build step and no runtime
// dependency. Browsers use their WebSocket; Node passes one in: `{ WebSocket }` from the
// "ws" package. The protocol is described in lhttpd's PROTOCOL.md; README.md beside this
// file shows the API with examples, lhttp.d.ts types it.

const encoder = new TextEncoder();
const decoder = new TextDecoder(); // lenient: invalid bytes become U+FFFD
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

const COMMAND_RE = /^[\x21-\x39\x3b-\x7e]{1,64}$/;
const KEY_RE = /^[\x21-\x39\x3b-\x7e]+$/;
const CHANNEL_RE = /^[A-Za-z0-9_\-=@+~:;]+(?:\.[A-Za-z0-9_\-=@+~:;]+)*$/;
const BAD_VALUE_RE = /[\0\r\n]/;
const PREFIX = 'LHTTP/1.0 ';

/** Close codes that lhttpd sends (PROTOCOL.md, "Close codes"). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  ABNORMAL: 1006,
  INVALID_DATA: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  SLOW_CONSUMER: 4008,
  UNAUTHORIZED: 4401,
  DISCONNECTED: 4403,
});

/**
 * The error the client reports: `kind` says where it came from: "server" (an LHTTP error
 * reply: `code`, `reason`, `inReplyTo` and the whole `lhttpMessage`; a refused subscribe
 * also has `channels`), "parse" (a message from the server that is not LHTTP),
 * "transport" (the WebSocket failed; `status` is the HTTP status of a refused handshake
 * when the WebSocket implementation tells it), "auth" (getToken() failed, a token expires
 * with no getToken() to renew it, or the server disconnected the user with 4403: `code`,
 * `reason`) or "usage" (a call the client refused, such as send() after close()).
 */
export class LhttpError extends Error {
  constructor(kind, message, fields = {}) {
    super(message);
    this.name = 'LhttpError';
    this.kind = kind;
    Object.assign(this, fields);
  }
}

// ---- Bytes and validation ------------------------------------------------------------

function toBytes(data) {
  if (data == null) return new Uint8Array(0);
  if (typeof data === 'string') return encoder.encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('a body must be a string, a Uint8Array or an ArrayBuffer');
}

function concat(chunks) {
  let n = 0;
  for (const c of chunks) n += c.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** True when `name` is a valid channel name (PROTOCOL.md section 4), at most 255 bytes. */
export function isValidChannel(name) {
  return typeof name === 'string' && CHANNEL_RE.test(name) && name.length <= 255;
}

// channelList(["a b", ["c"]]) -> ["a", "b", "c"]; throws on an invalid name.
function channelList(args) {
  const out = [];
  for (const a of args.flat(Infinity)) {
    if (typeof a !== 'string') throw new TypeError('a channel name must be a string');
    for (const name of a.split(/[ \t]+/)) {
      if (name === '') continue;
      if (!isValidChannel(name)) throw new TypeError(`invalid channel name: ${JSON.stringify(name)}`);
      out.push(name);
    }
  }
  return out;
}

function headerEntries(headers) {
  if (headers == null) return [];
  const list = Array.isArray(headers) ? headers
    : headers instanceof Map ? [...headers] : Object.entries(headers);
  const out = [];
  for (const [key, raw] of list) {
    if (raw === undefined || raw === null) continue;
    const value = String(raw);
    if (!KEY_RE.test(key)) throw new TypeError(`invalid header name: ${JSON.stringify(key)}`);
    if (BAD_VALUE_RE.test(value)) {
      throw new TypeError(`header ${key}: a value may not contain NUL, CR or LF`);
    }
    out.push([key, value]);
  }
  return out;
}

function headerBlock(entries) {
  let s = '';
  for (const [k, v] of entries) s += `${k}:${v}\r\n`;
  return s + '\r\n';
}

// ---- Multipart -----------------------------------------------------------------------

/**
 * Builds a multipart body. Each part is its headers (`key:value` lines), an empty line
 * and its body; the parts are laid end to end and the `multipart` header lists the byte
 * offset where each one starts. Offsets count UTF-8 bytes, never JavaScript characters.
 *
 *   const mp = new MultipartBuilder()
 *     .add({ 'content-type': 'text/plain' }, 'héllo')
 *     .add({ name: 'logo.png' }, pngBytes);
 *   client.publish('room1', mp);          // or: const { header, body } = mp.build()
 */
export class MultipartBuilder {
  #chunks = [];
  #offsets = [];
  #length = 0;

  /** Appends one part; returns the builder. */
  add(headers, body) {
    const head = encoder.encode(headerBlock(headerEntries(headers)));
    const bytes = toBytes(body);
    this.#offsets.push(this.#length);
    this.#chunks.push(head, bytes);
    this.#length += head.length + bytes.length;
    return this;
  }

  /** Number of parts added so far. */
  get size() {
    return this.#offsets.length;
  }

  /** `{ header, offsets, body }`: the `multipart` header value and the body bytes. */
  build() {
    return { header: this.#offsets.join(' '), offsets: [...this.#offsets], body: concat(this.#chunks) };
  }
}

// Parses `key:value` lines from bytes[pos..] up to the first empty line. Returns the
// headers, where the body starts (bytes.length when no empty line came) and whether the
// empty line came; throws on a malformed line.
function parseHeaders(bytes, pos) {
  const list = [];
  while (pos < bytes.length) {
    const lf = bytes.indexOf(10, pos);
    const next = lf < 0 ? bytes.length : lf + 1;
    let end = lf < 0 ? bytes.length : lf;
    if (lf >= 0 && end > pos && bytes[end - 1] === 13) end--;
    if (end === pos) return { list, bodyStart: next, blank: lf >= 0 };
    const line = bytes.subarray(pos, end);
    if (line.includes(13) || line.includes(0)) throw new Error('stray CR or NUL in a header line');
    const colon = line.indexOf(58);
    if (colon < 0) throw new Error('a header line without ":"');
    const key = decoder.decode(line.subarray(0, colon));
    if (!KEY_RE.test(key)) throw new Error(`bad header name ${JSON.stringify(key)}`);
    const value = decoder.decode(line.subarray(colon + 1)).replace(/^[ \t]+|[ \t]+$/g, '');
    list.push([key, value]);
    pos = next;
  }
  return { list, bodyStart: bytes.length, blank: false };
}

function headerObject(list) {
  const obj = Object.create(null);
  for (const [k, v] of list) {
    const lk = k.toLowerCase();
    if (!(lk in obj)) obj[lk] = v;
  }
  return obj;
}

/**
 * Splits a body at the offsets of a `multipart` header value (PROTOCOL.md, "Multipart
 * messages"). Returns the parts, or null when the value is not a list of decimal offsets
 * (no leading zeros) that starts at 0 and increases strictly inside the body, or when a
 * part's header block is malformed or lacks its empty line.
 */
export function parseMultipart(value, body) {
  const bytes = toBytes(body);
  const words = String(value).trim().split(/[ \t]+/);
  const offsets = [];
  for (const w of words) {
    if (!/^(?:0|[1-9][0-9]{0,14})$/.test(w)) return null;
    const n = Number(w);
    if (n >= bytes.length || (offsets.length ? n <= offsets[offsets.length - 1] : n !== 0)) return null;
    offsets.push(n);
  }
  const parts = [];
  for (let i = 0; i < offsets.length; i++) {
    const raw = bytes.subarray(offsets[i], i + 1 < offsets.length ? offsets[i + 1] : bytes.length);
    let h;
    try {
      h = parseHeaders(raw, 0);
    } catch {
      return null;
    }
    if (!h.blank) return null;
    const bodyBytes = raw.subarray(h.bodyStart);
    parts.push({
      headers: headerObject(h.list),
      headerList: h.list,
      body: decoder.decode(bodyBytes),
      bodyBytes,
    });
  }
  return parts;
}

// ---- Messages ------------------------------------------------------------------------

/**
 * Encodes one LHTTP message as bytes. `headers` is an object, a Map or a list of
 * [key, value] pairs (null and undefined values are left out); `body` a string, bytes
 * or a MultipartBuilder (whose `multipart` header is added). Throws TypeError on a bad
 * command, header name or value.
 */
export function encodeMessage(command, headers, body) {
  if (typeof command !== 'string' || !COMMAND_RE.test(command)) {
    throw new TypeError(`invalid command: ${JSON.stringify(command)}`);
  }
  const entries = headerEntries(headers);
  if (body instanceof MultipartBuilder) {
    if (!body.size) throw new TypeError('a multipart message needs at least one part');
    const mp = body.build();
    entries.push(['multipart', mp.header]);
    body = mp.body;
  }
  const head = encoder.encode(PREFIX + command + '\r\n' + headerBlock(entries));
  const bytes = toBytes(body);
  return bytes.length ? concat([head, bytes]) : head;
}

/**
 * Parses one LHTTP message (a string, bytes or an ArrayBuffer) into
 * `{ command, headers, headerList, body, bodyBytes, channels, parts, offset, prevOffset,
 * epoch }`: `headers` maps lower-case names to the first value, `headerList` keeps every
 * [key, value] as sent, `body` is the body decoded as UTF-8 and `bodyBytes` its bytes,
 * `channels` the list of the `publish` header (empty without one), `parts` the multipart
 * parts or null; `offset` and `prevOffset` (numbers) and `epoch` (a string) are the
 * server-set headers of a history channel's message, null without them.
 * Throws an Error when the message is not LHTTP.
 */
export function parseMessage(data) {
  const bytes = toBytes(data);
  const lf = bytes.indexOf(10);
  let end = lf < 0 ? bytes.length : lf;
  if (lf >= 0 && bytes[end - 1] === 13) end--;
  const first = decoder.decode(bytes.subarray(0, end));
  if (!first.startsWith(PREFIX)) throw new Error('not an LHTTP/1.0 message');
  const command = first.slice(PREFIX.length);
  if (!COMMAND_RE.test(command)) throw new Error(`bad command ${JSON.stringify(command)}`);
  const h = lf < 0 ? { list: [], bodyStart: bytes.length } : parseHeaders(bytes, lf + 1);
  const headers = headerObject(h.list);
  const bodyBytes = bytes.subarray(h.bodyStart);
  const body = decoder.decode(bodyBytes);
  const channels = headers.publish ? headers.publish.split(/[ \t]+/).filter(Boolean) : [];
  const parts = headers.multipart !== undefined ? parseMultipart(headers.multipart, bodyBytes) : null;
  return {
    command, headers, headerList: h.list, body, bodyBytes, channels, parts,
    offset: decimal(headers.offset), prevOffset: decimal(headers['prev-offset']), epoch: headers.epoch ?? null,
  };
}

// A header value that is a decimal number (no sign, no leading zero) as a Number, else
// null. Offsets are JetStream sequences: exact as Numbers up to 2^53.
function decimal(v) {
  return v !== undefined && /^(?:0|[1-9][0-9]{0,15})$/.test(v) ? Number(v) : null;
}

// ---- Reconnection policy -------------------------------------------------------------

// What a close code asks of the client: "no" (do not reconnect), "now" (service restart:
// the new workers are serving), "soon" (going away: a short random delay) or "backoff".
// 4401 (unauthorized) backs off when getToken() can fetch a new token (`renew`), and
// stops otherwise: the same token would be refused again.
function closeAdvice(code, status, renew) {
  if (status) {
    if (status === 429 || status >= 500) return 'backoff';
    return 'no'; // 400/401/403/404/426...: the same request would be refused again
  }
  switch (code) {
    case 1000: case 1002: case 1003: case 1007: case 1008: case 1009: case 1010:
    case 4403:
      return 'no';
    case 4401:
      return renew ? 'backoff' : 'no';
    case 1012:
      return 'now';
    case 1001:
      return 'soon';
    default:
      return 'backoff'; // 1006 (dropped), 1005, 1011, 1013, 4008, anything unknown
  }
}

const DEFAULTS = {
  protocols: ['lhttp'],
  command: 'message',
  reconnect: true,
  minDelayMs: 500,
  maxDelayMs: 30000,
  maxRetries: Infinity,
  connectTimeoutMs: 10000,
  stableMs: 5000,
  maxQueue: 256,
  shouldReconnect: null,
  token: null,
  getToken: null,
  wsOptions: null,
};

const EVENTS = new Set(['open', 'message', 'close', 'reconnecting', 'error', 'auth', 'unsubscribed', 'recovered', 'gap', 'join', 'leave']);

const EPOCH_RE = /^[0-9A-Za-z]{1,64}$/;
const isOffset = (n) => Number.isSafeInteger(n) && n >= 0;

// setTimeout's longest delay (about 24.8 days); a longer one would fire at once.
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Milliseconds from now until a token that expires in `remainingMs` is renewed: at 80 %
 * of the remaining lifetime or 30 s before it expires, whichever is earlier, but never
 * earlier than half of the remaining lifetime (so that a short token is not renewed in
 * a tight loop), and never in the past. null when the token has expired already.
 */
export function refreshDelay(remainingMs) {
  if (!(remainingMs > 0)) return null;
  return Math.floor(Math.max(Math.min(remainingMs * 0.8, remainingMs - 30000), remainingMs * 0.5));
}

const validToken = (t) => typeof t === 'string' && t !== '' && !BAD_VALUE_RE.test(t);

function report(err) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(err);
  else setTimeout(() => { throw err; }, 0);
}

/**
 * A connection to lhttpd that reconnects by itself. See README.md for the options and
 * the events; in short:
 *
 *   const client = new LhttpClient('ws://localhost:8081/ws');
 *   client.on('message', (m) => console.log(m.command, m.headers, m.body));
 *   client.subscribe('room1');
 *   client.publish('room1', 'hello');
 *
 * With `token` or `getToken` the client presents a token (`auth`, the first message of
 * every connection) and counts as open only once the server has accepted it; it renews
 * the token before it expires, on the server's `refresh`, and after a 4401 close.
 */
export class LhttpClient {
  #opts;
  #WebSocket;
  #handlers = new Map();
  #channels = new Set();
  #queue = [];
  #ws = null;
  #state = 'connecting';
  #attempt = 0;
  #opens = 0;
  #openedAt = 0;
  #timer = null;
  #connectTimer = null;
  #lastStatus = 0;
  #lastError = null;
  #pings = new Map();
  #pingSeq = 0;
  // Identity (PROTOCOL.md, "Authentication").
  #token = null; // the token presented on the next connection; null: anonymous
  #tokenStale = false; // getToken() before the next connection (after 4401 or a refusal)
  #tokenJob = null; // the getToken() call in progress, shared by whoever needs a token
  #authing = null; // 'connect' or 'refresh' while an auth message waits for its reply
  #refreshing = false; // getToken() running for a refresh of the open connection
  #refreshTimer = null;
  #refreshFailures = 0;
  #user = null;
  #expires = null;
  // Subscription tracking: with a token (or once subscribeAsync() was used), every
  // subscribe message is followed by a ping whose pong proves that the server has taken
  // it; an error reply to subscribe that comes before that pong is the refusal of that
  // message (the server answers a connection's messages in order).
  #track = false;
  #inflight = []; // [{ token, channels, error }], oldest first, on the current connection
  #confirmed = new Set(); // channels whose subscription the server took on this connection
  #waiters = new Set(); // subscribeAsync() promises: { pending: Set, resolve, reject }
  #barrierSeq = 0;
  // History and recovery (PROTOCOL.md, "History and recovery"): the position (epoch and
  // offset of the last message seen) of every subscribed history channel, resubscribed
  // with a recover entry on every connection; the recoveries asked on this connection;
  // the history() reads in flight, oldest first; and the history deliveries held while a
  // read is in flight (the server sends a read's messages right before its reply).
  #positions = new Map(); // channel -> { epoch, offset }
  #recovering = new Map(); // channel -> the offset a recovery asked from
  #reads = []; // [{ channel, token, conn, accepted, dead, resolve, reject, timer }]
  #readPongs = new Map(); // token of a read's ping whose pong is to come -> its conn
  #queries = []; // presence queries: [{ kind, channel, token, conn, accepted, dead, resolve, reject, timer }]
  #held = [];

  constructor(url, options = {}) {
    this.url = String(url);
    this.#opts = { ...DEFAULTS, ...options };
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.#WebSocket !== 'function') {
      throw new TypeError('no WebSocket here: pass one in, e.g. new LhttpClient(url, { WebSocket }) '
        + 'with WebSocket from the "ws" package');
    }
    const { token, getToken } = this.#opts;
    if (token != null && !validToken(token)) {
      throw new TypeError('token must be a non-empty string without CR, LF or NUL');
    }
    if (getToken != null && typeof getToken !== 'function') throw new TypeError('getToken must be a function');
    this.#token = token ?? null;
    this.#track = this.#token !== null || getToken != null;
    this.#connect(true);
  }

  /** "connecting", "open", "reconnecting" or "closed" (after close() or a final close). */
  get state() {
    return this.#state;
  }

  /** The channels this client is subscribed to (and resubscribes after a reconnect). */
  get channels() {
    return [...this.#channels];
  }

  /** The user id the server accepted in its last `auth` reply ("" for a token without
   *  sub), or null before any (anonymous clients). */
  get user() {
    return this.#user;
  }

  /** When the accepted token expires, in Unix seconds (0: never), or null before any
   *  `auth` reply. */
  get expires() {
    return this.#expires;
  }

  /** Adds a handler for "open", "message", "close", "reconnecting", "error", "auth" or
   *  "unsubscribed"; returns a function that removes it. */
  on(event, handler) {
    if (!EVENTS.has(event)) throw new TypeError(`unknown event: ${event}`);
    if (typeof handler !== 'function') throw new TypeError('a handler must be a function');
    if (!this.#handlers.has(event)) this.#handlers.set(event, new Set());
    this.#handlers.get(event).add(handler);
    return () => this.off(event, handler);
  }

  /** Removes a handler added with on(). */
  off(event, handler) {
    this.#handlers.get(event)?.delete(handler);
    return this;
  }

  #emit(event, arg) {
    for (const h of [...(this.#handlers.get(event) ?? [])]) {
      try {
        h.call(this, arg);
      } catch (err) {
        report(err);
      }
    }
  }

  /** Subscribes to channels (names, space-separated lists or arrays). Kept across
   *  reconnects. A last argument `{ since, epoch }` (an offset and the epoch it belongs
   *  to, e.g. from history() or position()) asks the server for the messages of a
   *  history channel after that offset first (a recovery: a "recovered" event tells how
   *  it went). Throws TypeError on an invalid name or option. */
  subscribe(...channels) {
    const names = channelList(this.#takeSince(channels));
    const fresh = names.filter((c) => !this.#channels.has(c));
    for (const c of names) this.#channels.add(c);
    if (this.#state === 'open' && fresh.length) this.#sendChannels('subscribe', fresh);
    return this;
  }

  // Takes a trailing { since, epoch } off a subscribe call's arguments and remembers it
  // as the position of the channels not yet subscribed; returns the channel arguments.
  #takeSince(args) {
    const lastArg = args[args.length - 1];
    if (lastArg === null || typeof lastArg !== 'object' || Array.isArray(lastArg)) return args;
    const rest = args.slice(0, -1);
    const { since, epoch } = lastArg;
    if (since === undefined && epoch === undefined) return rest;
    if (!isOffset(since)) throw new TypeError('since must be an offset (an integer >= 0)');
    if (typeof epoch !== 'string' || !EPOCH_RE.test(epoch)) throw new TypeError('since needs the epoch it belongs to (a string of letters and digits)');
    for (const c of channelList(rest)) {
      if (!this.#channels.has(c)) this.#positions.set(c, { epoch, offset: since });
    }
    return rest;
  }

  /** The position of a subscribed history channel: `{ epoch, offset }` of the last
   *  message seen (or of the server's `subscribed` reply), or null when none is known
   *  (not a history channel, or no reply yet). */
  position(channel) {
    const p = this.#positions.get(channel);
    return p && this.#channels.has(channel) ? { ...p } : null;
  }

  /**
   * Reads the history of a channel: resolves with `{ channel, messages, epoch, offset }`
   * once the server's final `history` reply comes: the last `limit` messages (after
   * offset `since` when given; the server caps both at its nats.jetstream.max_read),
   * oldest first, each as it was delivered (offset, prevOffset, epoch), and the channel's
   * epoch and latest offset. Rejects with the server's LhttpError (400, 403, 404 for a
   * channel without history, 503 while the history is unreachable), with kind
   * "transport" when the connection closes first or no reply comes within `timeoutMs`
   * (default 10000), or "usage" after close(). Made while the connection is down, the
   * read waits for the next one. The messages are not "message" events; while a read is
   * in flight, deliveries of history channels wait until it is answered, and then come
   * as events, in order.
   */
  history(channel, { limit, since, timeoutMs = 10000 } = {}) {
    if (!isValidChannel(channel)) return Promise.reject(new TypeError(`invalid channel name: ${JSON.stringify(channel)}`));
    if (limit !== undefined && !(isOffset(limit) && limit > 0)) return Promise.reject(new TypeError('limit must be an integer > 0'));
    if (since !== undefined && !isOffset(since)) return Promise.reject(new TypeError('since must be an offset (an integer >= 0)'));
    if (this.#state === 'closed') return Promise.reject(new LhttpError('usage', 'the client is closed'));
    const token = `lhttp-hist-${++this.#barrierSeq}`;
    return new Promise((resolve, reject) => {
      const read = {
        channel, token, conn: this.#state === 'open' ? this.#opens : this.#opens + 1,
        accepted: false, dead: false, resolve, reject, timer: null,
      };
      read.timer = setTimeout(() => {
        read.dead = true; // kept until its reply comes, so that the reply is not taken for another's
        reject(new LhttpError('transport', `no history reply for ${channel} in ${timeoutMs} ms`));
      }, timeoutMs);
      try {
        this.send('history', [['channel', channel], ['limit', limit], ['since', since]]);
        this.send('ping', null, token); // its pong: the server took the read (no error reply)
        this.#readPongs.set(token, read.conn);
      } catch (err) {
        clearTimeout(read.timer);
        reject(err);
        return;
      }
      this.#reads.push(read);
    });
  }

  /**
   * Asks who is in a channel of a presence namespace, across every worker and node:
   * resolves with `{ channel, count, users, truncated, clients }`, `clients` being at most
   * the server's presence.max_list entries `{ client, user, info, node }` (`truncated`
   * when there are more than it lists), `count` the connections and `users` the distinct
   * user ids. Rejects with the server's LhttpError (400, 403 when the namespace's
   * presence_read refuses, 404 for a channel without presence, 503 while NATS is
   * unreachable), with kind "transport" when the connection closes first or no answer
   * comes within `timeoutMs` (default 10000), or "usage" after close().
   */
  presence(channel, { timeoutMs = 10000 } = {}) {
    return this.#presenceQuery('presence', channel, timeoutMs);
  }

  /** Like presence(), with only the counts: resolves with `{ channel, count, users }`. */
  presenceStats(channel, { timeoutMs = 10000 } = {}) {
    return this.#presenceQuery('presence-stats', channel, timeoutMs);
  }

  #presenceQuery(kind, channel, timeoutMs) {
    if (!isValidChannel(channel)) return Promise.reject(new TypeError(`invalid channel name: ${JSON.stringify(channel)}`));
    if (this.#state === 'closed') return Promise.reject(new LhttpError('usage', 'the client is closed'));
    const token = `lhttp-pres-${++this.#barrierSeq}`;
    return new Promise((resolve, reject) => {
      const q = {
        kind, channel, token, conn: this.#state === 'open' ? this.#opens : this.#opens + 1,
        accepted: false, dead: false, resolve, reject, timer: null,
      };
      q.timer = setTimeout(() => {
        q.dead = true; // kept until its answer comes, so that it is not taken for another's
        reject(new LhttpError('transport', `no ${kind} answer for ${channel} in ${timeoutMs} ms`));
      }, timeoutMs);
      try {
        this.send(kind, [['channel', channel]]);
        this.send('ping', null, token); // its pong: the server took the query (no error reply)
      } catch (err) {
        clearTimeout(q.timer);
        reject(err);
        return;
      }
      this.#queries.push(q);
    });
  }

  // Rejects (and drops) the presence queries that match.
  #failQueries(match, error) {
    const failed = this.#queries.filter(match);
    this.#queries = this.#queries.filter((q) => !match(q));
    for (const q of failed) {
      clearTimeout(q.timer);
      if (!q.dead) q.reject(error());
    }
  }

  // A presence or presence-stats answer: for the oldest query of its kind and channel.
  #presenceAnswered(msg) {
    const h = msg.headers;
    const at = this.#queries.findIndex((q) => q.conn === this.#opens && q.kind === msg.command && q.channel === h.channel);
    if (at < 0) return;
    const [q] = this.#queries.splice(at, 1);
    clearTimeout(q.timer);
    if (q.dead) return;
    const res = { channel: h.channel, count: Number(h.count) || 0, users: Number(h.users) || 0 };
    if (msg.command === 'presence') {
      res.truncated = h.truncated === 'true';
      try {
        res.clients = JSON.parse(msg.body || '[]');
      } catch (err) {
        q.reject(new LhttpError('parse', `bad presence list: ${err.message}`, { data: msg.body }));
        return;
      }
    }
    q.resolve(res);
  }

  // A join or leave message: one event per entry (a batch carries them in its body).
  #joinLeave(msg) {
    const h = msg.headers;
    let entries;
    if (msg.command === 'leave' && h.gone !== undefined && h.count === undefined) {
      // A worker or node died: every client whose id starts with h.gone left at once.
      this.#emit('leave', { channel: h.channel, user: '', client: '', info: null, gone: h.gone });
      return;
    }
    if (h.count !== undefined) {
      try {
        entries = JSON.parse(msg.body);
      } catch (err) {
        this.#emit('error', new LhttpError('parse', `bad ${msg.command} list: ${err.message}`, { data: msg.body }));
        return;
      }
    } else {
      let info = null;
      try {
        info = h.info !== undefined ? JSON.parse(h.info) : null;
      } catch {
        info = null;
      }
      entries = [{ user: h.user ?? '', client: h.client ?? '', info }];
    }
    for (const e of entries) {
      this.#emit(msg.command, { channel: h.channel, user: e.user ?? '', client: e.client ?? '', info: e.info ?? null });
    }
  }

  /**
   * Subscribes like subscribe(), and returns a promise that resolves with the channels
   * once the server has taken the subscription, or rejects with the server's LhttpError
   * (kind "server": `code` 403 for a channel the rules refuse, 429, ...; `reason`,
   * `channels`) when it refuses it; the refused channels are then no longer in
   * `channels`. While the connection is down it waits for the next one. Rejects with
   * kind "usage" after close(), or when unsubscribe() comes first.
   */
  subscribeAsync(...channels) {
    let names;
    try {
      names = channelList(this.#takeSince(channels));
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#state === 'closed') return Promise.reject(new LhttpError('usage', 'the client is closed'));
    this.#track = true;
    for (const c of names) this.#channels.add(c);
    const need = names.filter((c) => !this.#confirmed.has(c));
    if (!need.length) return Promise.resolve(names);
    const done = new Promise((resolve, reject) => {
      this.#waiters.add({ pending: new Set(need), resolve: () => resolve(names), reject });
    });
    if (this.#state === 'open') {
      const asked = new Set(this.#inflight.filter((e) => !e.error).flatMap((e) => e.channels));
      const send = need.filter((c) => !asked.has(c));
      if (send.length) this.#sendChannels('subscribe', send);
    }
    return done;
  }

  /** Ends subscriptions; channels not subscribed to are ignored. */
  unsubscribe(...channels) {
    const names = channelList(channels).filter((c) => this.#channels.has(c));
    for (const c of names) this.#forget(c);
    if (names.length) {
      this.#rejectWaiters(names, new LhttpError('usage', 'unsubscribed before the server took the subscription'));
    }
    if (this.#state === 'open' && names.length) this.#sendChannels('unsubscribe', names);
    return this;
  }

  /**
   * Publishes `body` to one or more channels; every subscriber receives the whole
   * message. `command` defaults to the client's `command` option ("message"); `headers`
   * are sent along. Returns true when sent now, false when queued until the connection
   * is back.
   */
  publish(channels, body, { command, headers } = {}) {
    const names = channelList([channels]);
    if (!names.length) throw new TypeError('publish needs at least one channel');
    const entries = headerEntries(headers).filter(([k]) => k.toLowerCase() !== 'publish');
    entries.push(['publish', names.join(' ')]);
    return this.send(command ?? this.#opts.command, entries, body);
  }

  /**
   * Sends one LHTTP message. Returns true when it was handed to the WebSocket, false when
   * it was queued because the connection is not open (it is sent after the next open,
   * after the resubscription). Throws an LhttpError of kind "usage" after close() or when
   * the queue holds `maxQueue` messages already.
   */
  send(command, headers, body) {
    const data = encodeMessage(command, headers, body);
    if (this.#state === 'closed') throw new LhttpError('usage', 'the client is closed');
    if (this.#state === 'open') {
      this.#write(data);
      return true;
    }
    if (this.#queue.length >= this.#opts.maxQueue) {
      throw new LhttpError('usage', `${this.#queue.length} messages are already waiting for the connection`);
    }
    this.#queue.push(data);
    return false;
  }

  /** Sends `ping` and resolves with the round trip in milliseconds when the pong comes;
   *  rejects after timeoutMs (default 10 s) or when the client closes. */
  ping(timeoutMs = 10000) {
    const token = `p${++this.#pingSeq}-${Date.now()}`;
    return new Promise((resolve, reject) => {
      const started = Date.now();
      const timer = setTimeout(() => {
        this.#pings.delete(token);
        reject(new LhttpError('transport', 'no pong in time'));
      }, timeoutMs);
      this.#pings.set(token, { resolve: () => resolve(Date.now() - started), reject, timer });
      try {
        this.send('ping', null, token);
      } catch (err) {
        clearTimeout(timer);
        this.#pings.delete(token);
        reject(err);
      }
    });
  }

  /** Closes the connection for good: no reconnection, queued messages are dropped. */
  close(code = 1000, reason = '') {
    if (this.#state === 'closed') return;
    const ws = this.#ws;
    this.#finish();
    if (ws) {
      try {
        ws.close(code, reason);
      } catch {
        ws.close();
      }
    }
    // The socket's own close event is detached; tell the application here.
    this.#emit('close', { code, reason, wasClean: true, willReconnect: false });
  }

  // ---- internals ----

  #finish() {
    this.#state = 'closed';
    clearTimeout(this.#timer);
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#refreshTimer);
    this.#queue = [];
    this.#inflight = [];
    this.#confirmed.clear();
    this.#authing = null;
    if (this.#ws) this.#detach(this.#ws);
    this.#ws = null;
    for (const [token, p] of this.#pings) {
      clearTimeout(p.timer);
      p.reject(new LhttpError('transport', 'the client closed'));
      this.#pings.delete(token);
    }
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const w of waiters) w.reject(new LhttpError('usage', 'the client closed'));
    this.#held = [];
    this.#recovering.clear();
    this.#readPongs.clear();
    this.#failReads(() => true, () => new LhttpError('usage', 'the client closed'));
    this.#failQueries(() => true, () => new LhttpError('usage', 'the client closed'));
  }

  // Rejects (and drops) the history reads that match.
  #failReads(match, error) {
    const failed = this.#reads.filter(match);
    this.#reads = this.#reads.filter((r) => !match(r));
    for (const r of failed) {
      clearTimeout(r.timer);
      if (!r.dead) r.reject(error());
    }
  }

  // Forgets a channel that is no longer subscribed, with its position.
  #forget(c) {
    this.#channels.delete(c);
    this.#confirmed.delete(c);
    this.#positions.delete(c);
    this.#recovering.delete(c);
  }

  #detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.onerror = () => {}; // a late error of a socket given up must not go unhandled
  }

  // True when the next connection should present a token that getToken() fetches first:
  // none yet, the last one was refused or expired (4401), or it expires within 30 s.
  #needToken() {
    if (!this.#opts.getToken) return false;
    if (this.#token === null || this.#tokenStale) return true;
    return this.#expires > 0 && this.#expires * 1000 - Date.now() < 30000;
  }

  // Calls getToken() (one call at a time: concurrent needs share it) and resolves with
  // { token } or { error }, never rejecting, so that nobody has to be waiting for it.
  #fetchToken() {
    if (!this.#tokenJob) {
      this.#tokenJob = (async () => {
        const t = await this.#opts.getToken();
        if (!validToken(t)) throw new TypeError('getToken() must resolve to a non-empty string without CR, LF or NUL');
        return t;
      })().then((token) => {
        this.#token = token;
        this.#tokenStale = false;
        return { token };
      }, (error) => ({ error })).finally(() => {
        this.#tokenJob = null;
      });
    }
    return this.#tokenJob;
  }

  #connect(first) {
    this.#lastStatus = 0;
    this.#lastError = null;
    let ws;
    try {
      // Node's "ws" takes a third argument (TLS options such as ca for wss://); a
      // browser's WebSocket has none, so it is only passed when given.
      ws = this.#opts.wsOptions != null
        ? new this.#WebSocket(this.url, this.#opts.protocols, this.#opts.wsOptions)
        : new this.#WebSocket(this.url, this.#opts.protocols);
    } catch (err) {
      if (first) throw err; // a bad URL: say so at once
      this.#emit('error', new LhttpError('transport', err.message, { cause: err }));
      this.#closed(1006, String(err.message), false);
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.#ws = ws;
    this.#state = first ? 'connecting' : 'reconnecting';
    // The token is fetched while the handshake runs; auth waits for both.
    const job = this.#needToken() ? this.#fetchToken() : null;
    this.#connectTimer = setTimeout(() => {
      this.#lastError = new LhttpError('transport', this.#authing === 'connect'
        ? 'the server did not answer auth in time' : 'the WebSocket handshake timed out');
      try { ws.close(); } catch { /* closing a CONNECTING socket may throw */ }
      // Some implementations report no close for a socket that never opened.
      if (this.#ws === ws) {
        this.#detach(ws);
        this.#closed(1006, 'handshake timeout', false);
      }
    }, this.#opts.connectTimeoutMs);
    ws.onopen = () => this.#opened(ws, job);
    ws.onmessage = (ev) => this.#received(ev.data);
    ws.onerror = (ev) => {
      const msg = ev?.message ?? ev?.error?.message ?? 'WebSocket error';
      const m = /Unexpected server response: (\d{3})/.exec(msg);
      if (m) this.#lastStatus = Number(m[1]);
      this.#lastError = new LhttpError('transport', msg, { status: this.#lastStatus || undefined });
    };
    ws.onclose = (ev) => {
      if (this.#ws !== ws) return;
      this.#closed(ev.code, ev.reason ?? '', ev.wasClean ?? false);
    };
  }

  // The WebSocket is open: authenticate first when there is a token, else go ahead.
  async #opened(ws, job) {
    if (job === null && this.#token === null) {
      this.#ready();
      return;
    }
    let token = this.#token;
    if (job) {
      const got = await job;
      if (this.#ws !== ws) return; // closed or dropped meanwhile
      if (got.error) {
        this.#tokenStale = true;
        this.#emit('error', new LhttpError('auth', `getToken() failed: ${got.error.message}`, { cause: got.error }));
        if (this.#ws === ws) this.#abandon(ws, 4401, 'no token');
        return;
      }
      token = got.token;
    }
    this.#authing = 'connect';
    this.#write(encodeMessage('auth', [['token', token]]));
  }

  // Gives up on the current socket as if the server had closed it with `code`.
  #abandon(ws, code, reason) {
    this.#detach(ws);
    try { ws.close(1000); } catch { /* already closing */ }
    this.#closed(code, reason, false);
  }

  // Connected (and authenticated when there was a token): resubscribe, send the queue.
  #ready() {
    clearTimeout(this.#connectTimer);
    const reconnected = this.#opens > 0;
    this.#opens++;
    this.#openedAt = Date.now();
    this.#state = 'open';
    if (this.#channels.size) this.#sendChannels('subscribe', [...this.#channels]);
    const queued = this.#queue;
    this.#queue = [];
    for (const data of queued) this.#write(data);
    this.#emit('open', { reconnected, attempt: this.#attempt });
  }

  #closed(code, reason, wasClean) {
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#refreshTimer);
    const ws = this.#ws;
    if (ws) this.#detach(ws);
    this.#ws = null;
    this.#authing = null;
    this.#inflight = []; // their pongs will not come; the waiters wait for the next connection
    this.#confirmed.clear();
    this.#flushHeld();
    this.#recovering.clear();
    const conn = this.#opens;
    for (const [token, at] of this.#readPongs) if (at <= conn) this.#readPongs.delete(token);
    this.#failReads((r) => r.conn <= conn, () => new LhttpError('transport', 'the connection closed before the history reply'));
    this.#failQueries((q) => q.conn <= conn, () => new LhttpError('transport', 'the connection closed before the presence answer'));
    const status = this.#lastStatus;
    if (this.#lastError) this.#emit('error', this.#lastError);
    if (this.#state === 'closed') return; // an error handler called close()
    if (code === 4401) this.#tokenStale = true;
    if (code === 4403) {
      this.#emit('error', new LhttpError('auth', `disconnected by the server (4403${reason ? `: ${reason}` : ''})`, { code, reason }));
      if (this.#state === 'closed') return;
    }
    if (this.#state === 'open' && Date.now() - this.#openedAt >= this.#opts.stableMs) this.#attempt = 0;
    const info = { code, reason, wasClean, status: status || undefined };
    let advice = closeAdvice(code, status, Boolean(this.#opts.getToken));
    const custom = this.#opts.shouldReconnect ? this.#opts.shouldReconnect(info) : undefined;
    if (custom === false) advice = 'no';
    else if (custom === true && advice === 'no') advice = 'backoff';
    if (!this.#opts.reconnect || advice === 'no' || this.#attempt >= this.#opts.maxRetries) {
      this.#finish();
      this.#emit('close', { ...info, willReconnect: false });
      return;
    }
    const delayMs = this.#delay(advice);
    const attempt = ++this.#attempt;
    this.#state = 'reconnecting';
    for (const [token, p] of this.#pings) {
      clearTimeout(p.timer);
      p.reject(new LhttpError('transport', 'the connection closed before the pong'));
      this.#pings.delete(token);
    }
    this.#emit('close', { ...info, willReconnect: true });
    if (this.#state !== 'reconnecting') return; // a close handler called close()
    this.#emit('reconnecting', { attempt, delayMs, code, reason, status: status || undefined });
    if (this.#state !== 'reconnecting') return;
    this.#timer = setTimeout(() => this.#connect(false), delayMs);
  }

  // Milliseconds to wait before the next attempt: exponential back-off from minDelayMs
  // to maxDelayMs with "equal jitter" (half fixed, half random), so that clients dropped
  // together do not come back together; a service restart (1012) reconnects within
  // 100 ms and a first "going away" (1001) within minDelayMs.
  #delay(advice) {
    const { minDelayMs, maxDelayMs } = this.#opts;
    if (this.#attempt === 0 && advice === 'now') return Math.floor(Math.random() * Math.min(100, minDelayMs));
    if (this.#attempt === 0 && advice === 'soon') return Math.floor(Math.random() * minDelayMs);
    const base = Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(this.#attempt, 30));
    return Math.floor(base / 2 + Math.random() * (base / 2));
  }

  #received(data) {
    let msg;
    try {
      msg = parseMessage(data);
    } catch (err) {
      this.#emit('error', new LhttpError('parse', `bad message from the server: ${err.message}`, { data }));
      return;
    }
    const h = msg.headers;
    // The server's own messages carry no publish header; a publication that happens to
    // use one of these commands is an ordinary message.
    const own = h.publish === undefined;
    // A history read's messages come right before its reply: while one is in flight (and
    // not given up), history deliveries wait; anything else in between shows that those
    // held so far were not the read's.
    if (!own && msg.offset !== null && this.#reads.some((r) => r.conn === this.#opens && !r.dead)) {
      this.#held.push(msg);
      return;
    }
    if (!(own && msg.command === 'history')) this.#flushHeld();
    if (msg.command === 'error') {
      const err = new LhttpError('server', `${h.code ?? '?'} ${h.reason ?? 'error'}`
        + (h['in-reply-to'] ? ` (in reply to ${h['in-reply-to']})` : ''), {
        code: Number(h.code) || 0, reason: h.reason ?? '', inReplyTo: h['in-reply-to'], lhttpMessage: msg,
      });
      if (err.inReplyTo === 'subscribe') this.#subscribeRefused(err);
      if (err.inReplyTo === 'presence' || err.inReplyTo === 'presence-stats') {
        // The refusal of the oldest query of that kind the server has not taken yet.
        const q = this.#queries.find((x) => x.conn === this.#opens && x.kind === err.inReplyTo && !x.accepted);
        if (q) {
          this.#queries.splice(this.#queries.indexOf(q), 1);
          clearTimeout(q.timer);
          if (!q.dead) q.reject(err);
          return;
        }
      }
      if (err.inReplyTo === 'history') {
        // The refusal of the oldest read the server has not taken yet (its pong is to come).
        const read = this.#reads.find((r) => r.conn === this.#opens && !r.accepted);
        if (read) {
          this.#reads.splice(this.#reads.indexOf(read), 1);
          clearTimeout(read.timer);
          if (!read.dead) read.reject(err);
          return;
        }
      }
      this.#emit('error', err);
      if (err.inReplyTo === 'auth') this.#authRefused(err);
      return;
    }
    if (msg.command === 'pong') {
      const at = this.#inflight.findIndex((e) => e.token === msg.body);
      if (at >= 0) {
        this.#subscribeAnswered(at);
        return;
      }
      const pq = this.#queries.find((q) => q.token === msg.body);
      if (pq) {
        pq.accepted = true;
        return;
      }
      if (this.#readPongs.delete(msg.body)) {
        const read = this.#reads.find((r) => r.token === msg.body);
        if (read) read.accepted = true;
        return;
      }
      if (this.#pings.has(msg.body)) {
        const p = this.#pings.get(msg.body);
        this.#pings.delete(msg.body);
        clearTimeout(p.timer);
        p.resolve();
        return;
      }
    }
    if (own && msg.command === 'auth') {
      this.#authAccepted(msg);
      return;
    }
    if (own && msg.command === 'refresh') {
      if (this.#opts.getToken) this.#refresh();
      else this.#emit('error', new LhttpError('auth', 'the token expires and there is no getToken() to renew it', { expires: Number(h.expires) || 0 }));
      return;
    }
    if (own && msg.command === 'history' && h.channel !== undefined && this.#historyAnswered(msg)) return;
    if (own && (msg.command === 'presence' || msg.command === 'presence-stats') && h.channel !== undefined) {
      this.#presenceAnswered(msg);
      return;
    }
    if (own && (msg.command === 'join' || msg.command === 'leave') && h.channel !== undefined) {
      this.#joinLeave(msg);
      return;
    }
    if (own && msg.command === 'subscribed' && h.channel !== undefined) {
      this.#subscribedReply(msg);
      return;
    }
    if (own && msg.command === 'gap' && h.channel !== undefined) {
      this.#serverGap(msg);
      return;
    }
    if (own && msg.command === 'unsubscribed') {
      const reason = h.reason ?? '';
      for (const channel of (h.channel ?? '').split(/[ \t]+/).filter(Boolean)) {
        this.#forget(channel);
        this.#rejectWaiters([channel], new LhttpError('server', `unsubscribed from ${channel} by the server: ${reason}`, {
          code: 0, reason, channels: [channel], lhttpMessage: msg,
        }));
        this.#emit('unsubscribed', { channel, reason });
      }
      return;
    }
    if (!own) {
      this.#deliver(msg);
      return;
    }
    this.#emit('message', msg);
  }

  // ---- history and recovery ----

  #flushHeld() {
    if (!this.#held.length) return;
    const held = this.#held;
    this.#held = [];
    for (const m of held) this.#deliver(m);
  }

  // The reply that ends a history read: the last `count` held deliveries are the read's,
  // any before them were live. Returns false when no read of this connection asked.
  #historyAnswered(msg) {
    const h = msg.headers;
    const at = this.#reads.findIndex((r) => r.conn === this.#opens && r.channel === h.channel);
    const held = this.#held;
    this.#held = [];
    if (at < 0) {
      for (const m of held) this.#deliver(m);
      return false;
    }
    const count = decimal(h.count) ?? 0;
    const messages = held.splice(Math.max(0, held.length - count));
    for (const m of held) this.#deliver(m);
    const [read] = this.#reads.splice(at, 1);
    clearTimeout(read.timer);
    if (!read.dead) read.resolve({ channel: h.channel, messages, epoch: h.epoch ?? null, offset: decimal(h.offset) ?? 0 });
    return true;
  }

  // The `subscribed` reply of a history channel: its epoch and latest offset, and, when
  // a recovery was asked, whether the missed messages came (they came before it).
  #subscribedReply(msg) {
    const h = msg.headers;
    const channel = h.channel;
    const epoch = h.epoch ?? null;
    const offset = decimal(h.offset) ?? 0;
    if (!this.#channels.has(channel)) return; // unsubscribed meanwhile
    const pos = this.#positions.get(channel);
    const asked = this.#recovering.get(channel);
    this.#recovering.delete(channel);
    if (h.recovered === 'true') {
      const keep = pos && pos.epoch === epoch && pos.offset > offset;
      this.#positions.set(channel, { epoch, offset: keep ? pos.offset : offset });
      this.#emit('recovered', { channel, recovered: true, epoch, offset, from: asked ?? null });
    } else if (h.recovered === 'false') {
      this.#positions.set(channel, { epoch, offset });
      const from = asked ?? pos?.offset ?? null;
      this.#emit('recovered', { channel, recovered: false, epoch, offset, from });
      this.#emit('gap', { channel, from, to: offset, epoch, reason: 'recovery' });
    } else {
      this.#positions.set(channel, { epoch, offset });
    }
  }

  // The server's `gap`: messages after `from` up to `to` cannot be delivered; the next
  // message follows `to`.
  #serverGap(msg) {
    const h = msg.headers;
    const channel = h.channel;
    if (!this.#channels.has(channel)) return;
    const from = decimal(h.from);
    const to = decimal(h.to);
    const pos = this.#positions.get(channel);
    if (pos && to !== null && to > pos.offset) pos.offset = to;
    this.#emit('gap', { channel, from, to, epoch: pos?.epoch ?? null, reason: 'server' });
  }

  // The subscribed channel a history delivery belongs to: the server names it in the
  // `channel` header; without one (an older server), its only channel, or, when its
  // publish header names several, the one whose position its prevOffset follows, or the
  // only one with a position in its epoch. null when it cannot be told.
  #channelOf(msg) {
    if (msg.headers.channel !== undefined)
      return this.#channels.has(msg.headers.channel) ? msg.headers.channel : null;
    const mine = msg.channels.filter((c) => this.#channels.has(c));
    if (mine.length <= 1) return mine[0] ?? null;
    const same = mine.filter((c) => this.#positions.get(c)?.epoch === msg.epoch);
    const follows = same.find((c) => this.#positions.get(c).offset === msg.prevOffset);
    if (follows) return follows;
    return same.length === 1 ? same[0] : null;
  }

  // A delivery: a history channel's message moves its position on (a duplicate, at or
  // before the position, is dropped; a message that does not follow it is a gap), then
  // the message event.
  #deliver(msg) {
    const channel = msg.offset !== null && msg.epoch !== null ? this.#channelOf(msg) : null;
    if (channel !== null) {
      const pos = this.#positions.get(channel);
      if (pos && pos.epoch === msg.epoch && msg.offset <= pos.offset) return;
      this.#positions.set(channel, { epoch: msg.epoch, offset: msg.offset });
      if (pos && !this.#recovering.has(channel) && msg.prevOffset !== null && (pos.epoch !== msg.epoch || msg.prevOffset !== pos.offset)) {
        this.#emit('gap', {
          channel, from: pos.offset, to: msg.prevOffset, epoch: msg.epoch,
          reason: pos.epoch !== msg.epoch ? 'epoch' : 'order',
        });
      }
    }
    this.#emit('message', msg);
  }

  // ---- identity ----

  #authAccepted(msg) {
    const phase = this.#authing;
    this.#authing = null;
    const previous = this.#expires;
    this.#user = msg.headers.user ?? '';
    this.#expires = Math.max(0, Math.floor(Number(msg.headers.expires) || 0));
    this.#refreshFailures = 0;
    // A refresh that brought no later expiry (getToken() gave the same token) is not
    // repeated on a timer: the server's refresh message asks again when it is time.
    const refreshInMs = phase === 'refresh' && this.#expires === previous ? null : this.#scheduleRefresh();
    const ws = this.#ws;
    this.#emit('auth', { user: this.#user, expires: this.#expires, refreshed: phase !== 'connect', refreshInMs });
    if (phase === 'connect' && this.#ws === ws && ws && this.#state !== 'closed' && this.#state !== 'open') this.#ready();
  }

  #authRefused(err) {
    const phase = this.#authing;
    this.#authing = null;
    if (phase === 'connect') {
      // The token was refused: fetch another one (back off first) when getToken() can,
      // or stop.
      this.#tokenStale = true;
      if (this.#ws) this.#abandon(this.#ws, 4401, `token refused: ${err.reason}`);
    } else if (phase === 'refresh') {
      this.#retryRefresh(); // the connection keeps its identity until the token expires
    }
  }

  // Arms the refresh timer for the token that expires at this.#expires; returns the delay
  // in ms, or null when there is nothing to schedule (no getToken(), no expiry).
  #scheduleRefresh() {
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    if (!this.#opts.getToken || !this.#expires) return null;
    const delay = refreshDelay(this.#expires * 1000 - Date.now());
    if (delay === null) return null;
    this.#armRefresh(delay);
    return delay;
  }

  #armRefresh(delay) {
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = delay > MAX_TIMER_MS
      ? setTimeout(() => this.#scheduleRefresh(), MAX_TIMER_MS)
      : setTimeout(() => this.#refresh(), delay);
  }

  // After a failed refresh: try again after 1, 2, 4 ... 30 s.
  #retryRefresh() {
    if (this.#state !== 'open') return;
    this.#armRefresh(Math.min(30000, 1000 * 2 ** Math.min(this.#refreshFailures++, 5)));
  }

  // Fetches a new token and presents it on the open connection.
  async #refresh() {
    if (!this.#opts.getToken || this.#state !== 'open' || this.#authing || this.#refreshing) return;
    clearTimeout(this.#refreshTimer);
    const ws = this.#ws;
    this.#refreshing = true;
    const got = await this.#fetchToken();
    this.#refreshing = false;
    if (this.#ws !== ws || this.#state !== 'open') return;
    if (got.error) {
      this.#emit('error', new LhttpError('auth', `getToken() failed: ${got.error.message}`, { cause: got.error }));
      this.#retryRefresh();
      return;
    }
    this.#authing = 'refresh';
    this.#write(encodeMessage('auth', [['token', got.token]]));
  }

  // ---- subscription tracking ----

  // The pong of tracked subscribe message `at` (and of any older one) came: those not
  // refused are in place.
  #subscribeAnswered(at) {
    for (const entry of this.#inflight.splice(0, at + 1)) {
      if (entry.error) continue;
      for (const c of entry.channels) if (this.#channels.has(c)) this.#confirmed.add(c);
      for (const w of [...this.#waiters]) {
        for (const c of entry.channels) if (this.#confirmed.has(c)) w.pending.delete(c);
        if (!w.pending.size) {
          this.#waiters.delete(w);
          w.resolve();
        }
      }
    }
  }

  // An error reply to subscribe: the refusal of the oldest tracked subscribe message not
  // yet answered, or, untracked, of the channels its reason names. None of that
  // message's channels was subscribed (all or nothing).
  #subscribeRefused(err) {
    const entry = this.#inflight.find((e) => !e.error);
    let channels;
    if (entry) {
      entry.error = err;
      channels = entry.channels;
    } else {
      channels = [...this.#channels].filter((c) => namedIn(err.reason, c));
    }
    err.channels = [...channels];
    const later = new Set(this.#inflight.filter((e) => !e.error).flatMap((e) => e.channels));
    for (const c of channels) {
      if (later.has(c)) continue; // asked again since: that answer decides
      this.#forget(c);
    }
    this.#rejectWaiters(channels, err);
  }

  #rejectWaiters(channels, err) {
    for (const w of [...this.#waiters]) {
      if (channels.some((c) => w.pending.has(c))) {
        this.#waiters.delete(w);
        w.reject(err);
      }
    }
  }

  // Sends subscribe/unsubscribe for many channels in messages whose header lines stay
  // under lhttpd's default limits.max_header_line (4096); a subscribe names, in its
  // recover header, the position of each channel that has one (a history channel seen
  // before: the server sends what came after it). A tracked subscribe message is
  // followed by its ping.
  #sendChannels(command, names) {
    let batch = [];
    let recover = [];
    let len = 0;
    let rlen = 0;
    const flush = () => {
      if (batch.length) {
        const headers = [[command, batch.join(' ')]];
        if (recover.length) headers.push(['recover', recover.join(' ')]);
        this.#write(encodeMessage(command, headers));
        if (command === 'subscribe' && this.#track) {
          const token = `lhttp-sub-${++this.#barrierSeq}`;
          this.#inflight.push({ token, channels: batch, error: null });
          this.#write(encodeMessage('ping', null, token));
        }
      }
      batch = [];
      recover = [];
      len = 0;
      rlen = 0;
    };
    for (const n of names) {
      const pos = command === 'subscribe' ? this.#positions.get(n) : undefined;
      const entry = pos ? `${n},${pos.offset},${pos.epoch}` : null;
      if (len + n.length + 1 > 3500 || (entry && rlen + entry.length + 1 > 3500)) flush();
      batch.push(n);
      len += n.length + 1;
      if (entry) {
        recover.push(entry);
        rlen += entry.length + 1;
        this.#recovering.set(n, pos.offset);
      }
    }
    flush();
  }

  #write(bytes) {
    let text = null;
    try {
      text = strictDecoder.decode(bytes);
    } catch {
      // Not UTF-8: goes as a binary message.
    }
    try {
      this.#ws.send(text ?? bytes);
    } catch (err) {
      this.#emit('error', new LhttpError('transport', `send failed: ${err.message}`, { cause: err }));
    }
  }
}

// True when `reason` (an error reply's text) names channel `c` as a whole name: not
// inside a longer one (a '.' right after it counts only when a name goes on after it).
function namedIn(reason, c) {
  const nameChar = (ch) => ch !== undefined && /[A-Za-z0-9_\-=@+~]/.test(ch);
  for (let at = reason.indexOf(c); at >= 0; at = reason.indexOf(c, at + 1)) {
    const before = reason[at - 1];
    let after = reason[at + c.length];
    if (after === '.') after = nameChar(reason[at + c.length + 1]) ? 'x' : undefined;
    if (!nameChar(before) && before !== '.' && !nameChar(after)) return true;
  }
  return false;
}
