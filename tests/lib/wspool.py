#!/usr/bin/python3
"""wspool: many WebSocket clients at once against lhttpd, for the process-model tests
(reload, worker death, stop, balance). Built on the python websockets library (10.x).

Usage: wspool.py [options] PORT
    --clients N      clients to connect, all at once (default 100)
    --channels K     client i subscribes to channel "pool<i % K>" (default 10)
    --path P         WebSocket path (default /)
    --rate R         with --publish: messages per second (default 50)
    --publish        also run a publisher (see below)
    --ports FILE     write each client's local port to FILE, one a line, once connected
    --timeout S      deadline for connecting and for the final check (default 30)

Each client connects, subscribes to its channel and sends an LHTTP ping; a client
counts as connected when its pong arrives (the subscription is then in place on its
worker). When all are connected the pool prints `connected N` (or exits 1 with
`connect-failed N` when some could not connect within the deadline).

With --publish a separate publisher connection (it prints `publisher-port PORT`, its
local port) first publishes "sync" on every channel until every client has seen one (so
every worker's NATS subscription is in place), prints `publishing`, then publishes
numbered messages ("seq S" on channel pool<S % K>) at --rate until SIGUSR1. Then it
publishes "end" on every channel, waits until every client still open has seen it (or
the deadline), and prints the report.

SIGUSR1 ends the run: report, close every client with 1000, exit 0. Without --publish the
pool also reports and exits by itself once the server has closed every client. Report:
    published P                (with --publish; P numbered messages)
    open N closed N
    closes CODE=COUNT ...      close codes the server sent (none = dropped without one)
    missing N                  numbered messages an open client did not get
    disorder N                 messages that arrived out of order or twice
    errors N                   unexpected messages (error replies, junk)
    closed-port PORT CODE      one line per closed client (its local port)
"""

import asyncio
import os
import signal
import sys
import time

import websockets

CRLF = "\r\n"


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def lhttp_publish(channel, body):
    return "LHTTP/1.0 chat" + CRLF + "publish:" + channel + CRLF + CRLF + body


class Client:
    def __init__(self, pool, idx):
        self.pool = pool
        self.idx = idx
        self.channel = "pool%d" % (idx % pool.channels)
        self.ws = None
        self.port = 0
        self.ready = asyncio.Event()
        self.synced = asyncio.Event()
        self.ended = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_code = None
        self.next_seq = 0  # the channel's sequence number expected next (seq // K)
        self.got = 0
        self.disorder = 0
        self.errors = 0
        self.last_seq = 0

    async def run(self):
        p = self.pool
        try:
            self.ws = await websockets.connect(
                p.url, ping_interval=None, max_queue=None, open_timeout=p.timeout,
                close_timeout=2)
        except Exception as e:  # noqa: BLE001  (any failure counts as not connected)
            p.connect_errors.append("%s" % type(e).__name__)
            self.closed.set()
            return
        self.port = self.ws.local_address[1]
        try:
            await self.ws.send("LHTTP/1.0 chat" + CRLF + "subscribe:" + self.channel + CRLF)
            await self.ws.send("LHTTP/1.0 ping" + CRLF + CRLF + "c%d" % self.idx)
            async for m in self.ws:
                self.on_message(m)
        except websockets.exceptions.ConnectionClosed:
            pass
        rcvd = self.ws.close_rcvd
        self.close_code = rcvd.code if rcvd is not None else None
        self.closed.set()
        p.on_closed(self)

    def on_message(self, m):
        if isinstance(m, bytes):
            self.errors += 1
            return
        head, _, body = m.partition(CRLF + CRLF)
        if head.startswith("LHTTP/1.0 pong"):
            self.ready.set()
            return
        if not head.startswith("LHTTP/1.0 chat"):
            self.errors += 1
            return
        if body == "sync":
            self.synced.set()
        elif body == "end":
            self.ended.set()
        elif body.startswith("seq "):
            seq = int(body[4:])
            cseq = seq // self.pool.channels
            if cseq == self.next_seq:
                self.next_seq += 1
                self.got += 1
            elif cseq > self.next_seq:
                self.disorder += 1
                self.next_seq = cseq + 1
                self.got += 1
            else:
                self.disorder += 1
        else:
            self.errors += 1


class Pool:
    def __init__(self, port, clients, channels, path, rate, publish, ports_file, timeout):
        self.url = "ws://127.0.0.1:%d%s" % (port, path)
        self.n = clients
        self.channels = channels
        self.rate = rate
        self.publish = publish
        self.ports_file = ports_file
        self.timeout = timeout
        self.clients = []
        self.connect_errors = []
        self.finish = asyncio.Event()
        self.nclosed = 0
        self.all_closed = asyncio.Event()
        self.published = 0  # numbered messages sent
        self.pub_errors = 0

    def on_closed(self, c):
        self.nclosed += 1
        if self.nclosed == self.n:
            self.all_closed.set()

    async def wait_all(self, events, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), left)
            return True
        except asyncio.TimeoutError:
            return False

    async def publisher(self, started):
        ws = await websockets.connect(self.url, ping_interval=None, max_queue=None,
                                      close_timeout=2)
        out("publisher-port %d" % ws.local_address[1])

        async def drain():
            # The publisher subscribes to nothing: anything it receives is an error reply.
            try:
                async for _ in ws:
                    self.pub_errors += 1
            except websockets.exceptions.ConnectionClosed:
                pass
        reader = asyncio.ensure_future(drain())
        # Sync: until every client has seen a message on its channel.
        deadline = time.monotonic() + self.timeout
        while True:
            for k in range(self.channels):
                await ws.send(lhttp_publish("pool%d" % k, "sync"))
            if await self.wait_all([c.synced for c in self.clients if not c.closed.is_set()],
                                   min(deadline, time.monotonic() + 0.2)):
                break
            if time.monotonic() >= deadline:
                out("sync-failed %d" % sum(1 for c in self.clients if not c.synced.is_set()))
                break
        out("publishing")
        started.set()
        interval = 1.0 / self.rate
        t0 = time.monotonic()
        seq = 0
        while not self.finish.is_set():
            await ws.send(lhttp_publish("pool%d" % (seq % self.channels), "seq %d" % seq))
            seq += 1
            self.published = seq
            delay = t0 + seq * interval - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.finish.wait(), delay)
                except asyncio.TimeoutError:
                    pass
        for k in range(self.channels):
            await ws.send(lhttp_publish("pool%d" % k, "end"))
        ok = await self.wait_all([c.ended for c in self.clients if not c.closed.is_set()],
                                 time.monotonic() + self.timeout)
        if not ok:
            out("end-timeout %d" % sum(1 for c in self.clients
                                       if not c.closed.is_set() and not c.ended.is_set()))
        reader.cancel()
        await ws.close()

    def report(self):
        if self.publish:
            out("published %d" % self.published)
        open_ = [c for c in self.clients if not c.closed.is_set()]
        closed = [c for c in self.clients if c.closed.is_set()]
        out("open %d closed %d" % (len(open_), len(closed)))
        codes = {}
        for c in closed:
            k = str(c.close_code) if c.close_code is not None else "none"
            codes[k] = codes.get(k, 0) + 1
        out("closes " + " ".join("%s=%d" % kv for kv in sorted(codes.items())))
        missing = 0
        if self.publish:
            for c in open_:
                # Channel k got the numbered messages k, k+K, ... below self.published.
                k = c.idx % self.channels
                want = (self.published - k + self.channels - 1) // self.channels
                missing += max(0, want - c.got)
        out("missing %d" % missing)
        out("disorder %d" % sum(c.disorder for c in self.clients))
        out("errors %d" % (sum(c.errors for c in self.clients) + self.pub_errors))
        for c in closed:
            out("closed-port %d %s" % (c.port, c.close_code))

    async def main(self):
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, self.finish.set)
        self.clients = [Client(self, i) for i in range(self.n)]
        tasks = [asyncio.ensure_future(c.run()) for c in self.clients]
        deadline = time.monotonic() + self.timeout
        # A client is connected once its pong arrived, or it failed.
        await self.wait_all([asyncio_any(c.ready, c.closed) for c in self.clients], deadline)
        bad = sum(1 for c in self.clients if not c.ready.is_set())
        if bad:
            errs = {}
            for e in self.connect_errors:
                errs[e] = errs.get(e, 0) + 1
            out("connect-failed %d %s" % (bad, " ".join("%s=%d" % kv for kv in errs.items())))
            os._exit(1)
        if self.ports_file:
            with open(self.ports_file + ".tmp", "w") as f:
                f.write("".join("%d\n" % c.port for c in self.clients))
            os.rename(self.ports_file + ".tmp", self.ports_file)
        out("connected %d" % self.n)
        if self.publish:
            started = asyncio.Event()
            pub = asyncio.ensure_future(self.publisher(started))
            await pub
        else:
            done = asyncio.ensure_future(self.all_closed.wait())
            fin = asyncio.ensure_future(self.finish.wait())
            await asyncio.wait([done, fin], return_when=asyncio.FIRST_COMPLETED)
            done.cancel()
            fin.cancel()
        self.report()
        await asyncio.gather(*(c.ws.close() for c in self.clients
                               if c.ws is not None and not c.closed.is_set()),
                             return_exceptions=True)
        for t in tasks:
            t.cancel()


class asyncio_any:
    """An awaitable-event stand-in that is set when either of two events is."""

    def __init__(self, a, b):
        self.a, self.b = a, b

    async def wait(self):
        ta = asyncio.ensure_future(self.a.wait())
        tb = asyncio.ensure_future(self.b.wait())
        await asyncio.wait([ta, tb], return_when=asyncio.FIRST_COMPLETED)
        ta.cancel()
        tb.cancel()


def main(argv):
    opts = {"clients": 100, "channels": 10, "path": "/", "rate": 50.0, "publish": False,
            "ports": None, "timeout": 30.0}
    args = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--publish":
            opts["publish"] = True
            i += 1
            continue
        if a.startswith("--") and i + 1 < len(argv):
            key = a[2:]
            if key not in opts:
                sys.stderr.write("wspool: unknown option %s\n" % a)
                return 2
            v = argv[i + 1]
            opts[key] = v if key in ("path", "ports") else float(v)
            i += 2
            continue
        args.append(a)
        i += 1
    if len(args) != 1:
        sys.stderr.write(__doc__)
        return 2
    pool = Pool(int(args[0]), int(opts["clients"]), int(opts["channels"]), opts["path"],
                opts["rate"], opts["publish"], opts["ports"], opts["timeout"])
    asyncio.run(pool.main())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
