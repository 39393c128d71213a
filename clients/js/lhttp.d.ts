// Types for lhttp.js, the LHTTP client for lhttpd.

/** Header values to send: an object, a Map or [key, value] pairs. null/undefined values are left out. */
export type HeadersInit =
  | Record<string, string | number | boolean | null | undefined>
  | Map<string, string | number | boolean | null | undefined>
  | ReadonlyArray<readonly [string, string | number | boolean | null | undefined]>;

/** A message or part body: text (sent as UTF-8) or bytes. */
export type BodyInit = string | Uint8Array | ArrayBuffer | ArrayBufferView | null | undefined;

/** Channel names: one name, a space-separated list, or (nested) arrays of them. */
export type Channels = string | ReadonlyArray<Channels>;

/** One part of a multipart message. */
export interface LhttpPart {
  /** Lower-case header name -> value of its first occurrence. */
  headers: Record<string, string>;
  /** Every header as sent: [key, value] in order. */
  headerList: Array<[string, string]>;
  /** The part's body decoded as UTF-8 (invalid bytes become U+FFFD). */
  body: string;
  /** The part's body bytes. */
  bodyBytes: Uint8Array;
}

/** A message received from lhttpd. */
export interface LhttpMessage {
  /** The command of the command line, e.g. "chat". */
  command: string;
  /** Lower-case header name -> value of its first occurrence. Values may contain ":". */
  headers: Record<string, string>;
  /** Every header as sent: [key, value] in order. */
  headerList: Array<[string, string]>;
  /** The body decoded as UTF-8 (invalid bytes become U+FFFD). */
  body: string;
  /** The body bytes, exactly as sent. */
  bodyBytes: Uint8Array;
  /** The channels of the `publish` header: where this publication was sent. */
  channels: string[];
  /** The parts when the message has a valid `multipart` header, else null. */
  parts: LhttpPart[] | null;
  /** A history channel's message: its offset (the server-set `offset` header), else null. */
  offset: number | null;
  /** A history channel's message: the offset of the channel's previous message (0 for
   *  its first), else null. */
  prevOffset: number | null;
  /** A history channel's message: the epoch of the stream its offset belongs to, else null. */
  epoch: string | null;
}

export type LhttpErrorKind = 'server' | 'parse' | 'transport' | 'auth' | 'usage';

export class LhttpError extends Error {
  kind: LhttpErrorKind;
  /** kind "server": the code of the error reply (400, 401, 403, 429, 431, 500, 503, ...);
   *  kind "auth": 4403 when the server disconnected the user. */
  code?: number;
  /** kind "server": the reason of the error reply; kind "auth": the close reason of a 4403. */
  reason?: string;
  /** kind "server": the command of the refused message ("auth" for a refused token). */
  inReplyTo?: string;
  /** kind "server", a refused subscribe: the channels of the refused message, none of
   *  which was subscribed. */
  channels?: string[];
  /** kind "server": the whole error reply. */
  lhttpMessage?: LhttpMessage;
  /** kind "transport": the HTTP status of a refused handshake, when known (Node's "ws"). */
  status?: number;
  constructor(kind: LhttpErrorKind, message: string, fields?: object);
}

export interface OpenEvent {
  /** True for every open after the first. */
  reconnected: boolean;
  /** The reconnection attempt that succeeded (0 for the first connection). */
  attempt: number;
}

export interface CloseEvent {
  /** The WebSocket close code (1006 for a dropped or refused connection). */
  code: number;
  reason: string;
  wasClean: boolean;
  /** The HTTP status of a refused handshake, when the WebSocket implementation tells it. */
  status?: number;
  /** Whether a reconnection follows (a "reconnecting" event comes next). */
  willReconnect: boolean;
}

export interface ReconnectingEvent {
  /** 1 for the first attempt after a connection was lost, then 2, 3, ... */
  attempt: number;
  /** Milliseconds until the attempt. */
  delayMs: number;
  code: number;
  reason: string;
  status?: number;
}

export interface AuthEvent {
  /** The user id the server read from the token ("" for a token without sub). */
  user: string;
  /** When the token expires, in Unix seconds; 0: never. */
  expires: number;
  /** False for the auth that opens a connection, true for a refresh of an open one. */
  refreshed: boolean;
  /** Milliseconds until the client renews the token with getToken(), or null when it
   *  will not on its own (no getToken, no expiry). */
  refreshInMs: number | null;
}

export interface UnsubscribedEvent {
  /** The channel whose subscription the server ended (it is no longer in `channels`). */
  channel: string;
  /** Why, from the server. */
  reason: string;
}

/** Where a history channel stands: the epoch and the offset of the last message seen. */
export interface Position {
  epoch: string;
  offset: number;
}

export interface RecoveredEvent {
  channel: string;
  /** True: every message after `from` came (before this event), in order; false: none
   *  came (evicted, expired, another epoch, too many, history unreachable): a "gap"
   *  event follows and the application reloads its state. */
  recovered: boolean;
  /** The channel's epoch and latest offset, where the client now stands. */
  epoch: string | null;
  offset: number;
  /** The offset the recovery asked from. */
  from: number | null;
}

export interface GapEvent {
  channel: string;
  /** Messages after `from` up to `to` are missing (null when unknown). */
  from: number | null;
  to: number | null;
  epoch: string | null;
  /** "recovery": recovered:false on a resubscription; "server": the server's `gap`
   *  message; "order": a delivery that does not follow the last one seen; "epoch": a
   *  delivery of a new epoch (the stream was made again). */
  reason: 'recovery' | 'server' | 'order' | 'epoch';
}

export interface HistoryResult {
  channel: string;
  /** Oldest first, each as it was delivered (offset, prevOffset, epoch). */
  messages: LhttpMessage[];
  /** The channel's epoch and latest offset when the server answered. */
  epoch: string | null;
  offset: number;
}

/** One connection in a presence channel. */
export interface PresenceEntry {
  /** The connection's id, unique across the cluster ("<node>-<pid>-<n>"). */
  client: string;
  /** Its user id ("" for an anonymous connection). */
  user: string;
  /** The "info" of its token or of the connect webhook's answer, or null. */
  info: unknown;
  /** The lhttpd node it is on. */
  node: string;
}

export interface PresenceStats {
  channel: string;
  /** Connections subscribed to the channel. */
  count: number;
  /** Distinct (non-empty) user ids among them. */
  users: number;
}

export interface PresenceResult extends PresenceStats {
  /** At most the server's presence.max_list entries. */
  clients: PresenceEntry[];
  /** true when there are more connections than `clients` lists. */
  truncated: boolean;
}

export interface PresenceOptions {
  /** Reject with kind "transport" when no answer came in this time; default 10000 ms. */
  timeoutMs?: number;
}

/** A connection that subscribed to (join) or left (leave) a join_leave channel. */
export interface JoinLeaveEvent {
  channel: string;
  user: string;
  client: string;
  info: unknown;
  /**
   * On a leave only: a worker or node died, and every client whose id starts with this
   * prefix left at once (user and client are then empty).
   */
  gone?: string;
}

export interface HistoryOptions {
  /** At most this many messages (the last ones); default and cap: the server's nats.jetstream.max_read. */
  limit?: number;
  /** Only messages after this offset. */
  since?: number;
  /** Reject with kind "transport" when no reply came in this time; default 10000 ms. */
  timeoutMs?: number;
}

/** A trailing argument of subscribe(): recover from this position (a history channel). */
export interface SinceOptions {
  since: number;
  epoch: string;
}

export interface LhttpEvents {
  open: OpenEvent;
  message: LhttpMessage;
  close: CloseEvent;
  reconnecting: ReconnectingEvent;
  error: LhttpError;
  auth: AuthEvent;
  unsubscribed: UnsubscribedEvent;
  recovered: RecoveredEvent;
  gap: GapEvent;
  join: JoinLeaveEvent;
  leave: JoinLeaveEvent;
}

export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface LhttpClientOptions {
  /** WebSocket constructor; default globalThis.WebSocket. In Node 20: `WebSocket` from "ws". */
  WebSocket?: new (url: string, protocols?: string | string[], options?: any) => any;
  /** Passed as the third argument of the WebSocket constructor (Node's "ws"): for wss://
   *  with a private CA, `{ ca: readFileSync('ca.pem') }`. Not for browsers. */
  wsOptions?: Record<string, unknown>;
  /** Subprotocols offered; default ["lhttp"]. */
  protocols?: string[];
  /** Command of publish() messages when none is given; default "message". */
  command?: string;
  /** Reconnect after a connection is lost; default true. */
  reconnect?: boolean;
  /** First back-off delay; default 500 ms. */
  minDelayMs?: number;
  /** Longest back-off delay; default 30000 ms. */
  maxDelayMs?: number;
  /** Give up after this many attempts in a row; default Infinity. */
  maxRetries?: number;
  /** A handshake not done in this time counts as failed; default 10000 ms. */
  connectTimeoutMs?: number;
  /** A connection up this long resets the back-off; default 5000 ms. */
  stableMs?: number;
  /** Messages kept while the connection is down; default 256. */
  maxQueue?: number;
  /** Overrules the close-code policy: true reconnects, false stops, undefined keeps the default. */
  shouldReconnect?: (event: { code: number; reason: string; wasClean: boolean; status?: number }) => boolean | undefined;
  /** A token (JWT) to present in `auth`, the first message of every connection. */
  token?: string;
  /** Fetches a token: before the first connection when `token` is not given, before the
   *  token expires, on the server's `refresh`, and after a 4401 close or a refusal. */
  getToken?: () => Promise<string> | string;
}

export interface PublishOptions {
  /** The message's command; default the client's `command` option. */
  command?: string;
  /** More headers (a `publish` header given here is replaced). */
  headers?: HeadersInit;
}

export class LhttpClient {
  constructor(url: string | URL, options?: LhttpClientOptions);
  readonly url: string;
  readonly state: ClientState;
  /** The channels subscribed to, resubscribed after every reconnection. */
  readonly channels: string[];
  /** The user id of the server's last `auth` reply; null before one (anonymous). */
  readonly user: string | null;
  /** When the accepted token expires (Unix seconds, 0: never); null before an `auth` reply. */
  readonly expires: number | null;
  on<E extends keyof LhttpEvents>(event: E, handler: (this: LhttpClient, arg: LhttpEvents[E]) => void): () => void;
  off<E extends keyof LhttpEvents>(event: E, handler: (this: LhttpClient, arg: LhttpEvents[E]) => void): this;
  subscribe(...channels: Channels[]): this;
  /** With a last argument { since, epoch }: a history channel not yet subscribed starts
   *  from that position (the server sends what came after it first; "recovered" tells). */
  subscribe(...args: [...Channels[], SinceOptions]): this;
  /** Subscribes; resolves with the channels once the server has taken them, rejects with
   *  the server's LhttpError (code 403, 429, ...; `channels`) when it refuses them. */
  subscribeAsync(...channels: Channels[]): Promise<string[]>;
  subscribeAsync(...args: [...Channels[], SinceOptions]): Promise<string[]>;
  /** The position of a subscribed history channel, or null (no history, or not known yet). */
  position(channel: string): Position | null;
  /** Reads a history channel's last messages; resolves at the server's final reply. */
  history(channel: string, options?: HistoryOptions): Promise<HistoryResult>;
  /** Who is in a presence channel (every worker and node). */
  presence(channel: string, options?: PresenceOptions): Promise<PresenceResult>;
  /** The counts only. */
  presenceStats(channel: string, options?: PresenceOptions): Promise<PresenceStats>;
  unsubscribe(...channels: Channels[]): this;
  /** Returns true when sent now, false when queued until the connection is back. */
  publish(channels: Channels, body?: BodyInit | MultipartBuilder, options?: PublishOptions): boolean;
  /** Returns true when sent now, false when queued until the connection is back. */
  send(command: string, headers?: HeadersInit | null, body?: BodyInit | MultipartBuilder): boolean;
  /** Resolves with the round-trip time in milliseconds. */
  ping(timeoutMs?: number): Promise<number>;
  /** Closes for good: no reconnection. */
  close(code?: number, reason?: string): void;
}

export class MultipartBuilder {
  /** Appends a part: its headers, then its body. */
  add(headers: HeadersInit | null | undefined, body?: BodyInit): this;
  /** The number of parts. */
  readonly size: number;
  /** The `multipart` header value ("0 31 ..."), the offsets in bytes, and the body. */
  build(): { header: string; offsets: number[]; body: Uint8Array };
}

export const CloseCode: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  PROTOCOL_ERROR: 1002;
  UNSUPPORTED_DATA: 1003;
  ABNORMAL: 1006;
  INVALID_DATA: 1007;
  POLICY_VIOLATION: 1008;
  MESSAGE_TOO_BIG: 1009;
  INTERNAL_ERROR: 1011;
  SERVICE_RESTART: 1012;
  TRY_AGAIN_LATER: 1013;
  SLOW_CONSUMER: 4008;
  UNAUTHORIZED: 4401;
  DISCONNECTED: 4403;
}>;

export function encodeMessage(command: string, headers?: HeadersInit | null, body?: BodyInit | MultipartBuilder): Uint8Array;
export function parseMessage(data: string | Uint8Array | ArrayBuffer): LhttpMessage;
export function parseMultipart(value: string, body: BodyInit): LhttpPart[] | null;
export function isValidChannel(name: unknown): boolean;
/** Milliseconds until a token that expires in remainingMs is renewed; null when expired. */
export function refreshDelay(remainingMs: number): number | null;
