#!/usr/bin/python3
"""histclient: a fleet of LHTTP clients that track a history channel's offsets and recover
after every reconnect, for lhttpd's history integration tests (issue 18). Raw asyncio
WebSocket clients (no library), optionally spread over several processes.

Usage: histclient.py fleet [options]
       histclient.py recover PORT CHANNEL EPOCH OFFSET[:DELAY_MS]...
       histclient.py offsets PORT CHANNEL LIMIT

offsets reads the channel's history (`history` with limit LIMIT) and prints each
message's "OFFSET PREV-OFFSET", oldest first, then "end count N offset L epoch E" (the
end reply).

recover opens one connection per OFFSET (rN for the N-th), each sending, DELAY_MS after
its connection is open (default 0), a subscribe with recover:CHANNEL,OFFSET,EPOCH, and prints
    rN recovered true|false offset O epoch E count N first F last L chain ok|bad
once its reply came (N messages came before it, offsets F to L; chain: each one's
prev-offset is the offset before it, the first one's is OFFSET), or `rN timeout ...`
(HC_TIMEOUT seconds, default 10). With HC_RETRY_CONNECT=1 a refused connection is tried
again every 5 ms (a server that is starting).

Every client connects to one of --ports (round robin), sends
    LHTTP/1.0 subscribe\\r\\nsubscribe:CH\\r\\n\\r\\n
and, after each reconnect, the same with recover:CH,OFFSET,EPOCH (the offset and epoch it
saw last). It checks every message of CH as it arrives:
  - the server's headers come first, in order: offset, prev-offset, epoch, channel (CH);
  - the epoch is the one of the last `subscribed` reply;
  - prev-offset is the offset it saw last (no gap), offset is larger (no duplicate);
  - the `subscribed` reply of a recovery says recovered:true and names, as the latest
    offset, the last message it got (what it missed came first, in order).
Anything else (a `gap` message, an error reply, recovered:false) is counted as bad.

Publishers (one per port in --pubs) are clients too: each publishes
    LHTTP/1.0 m\\r\\npublish:CH\\r\\n\\r\\nP<i>-<k>
for k = 1, 2, ..., at most --window unacknowledged at once, at --rate messages per second
(0: as fast as the window allows). A message is acknowledged when the publisher gets its
own copy (with its offset). An error reply (503 while JetStream is away or a new worker
is not ready) or a lost connection makes it send the unacknowledged ones again (after a
recovery, so a message that was stored is not sent twice) -- with --window 1 this is
exact. Publishers stop when --count messages each are acknowledged or when --stop-file
exists.

Then the fleet reads the channel's history back (`history` command, limit
--history-limit) from a fresh connection on the first port and checks:
  - the history is one chain (each prev-offset the offset before it);
  - every acknowledged message is in it with its offset (none lost);
  - each publisher's messages are in the order it sent them (those it had to send again
    aside);
  - every client got exactly the history's messages after the offset it started at,
    once, in order (the offset lists are compared).

Output (stdout, one line each, for bats to wait on):
    ready N                  every client and publisher has its first `subscribed` reply
    publishing
    published A resent R errors E dup-bodies D    (acknowledged, sent again, error replies,
                             bodies stored twice)
    history H first F last L
    clients N complete C mismatched M
    reconnects R recovered-true T recovered-false F bad B
    deliveries D
    bad ...                  the first few problems, one a line
    ok | FAIL
--status FILE is rewritten every 0.25 s with
    acked A connected C reconnects R recovered-true T recovered-false F bad B
(connected: clients with a live subscription now; T: recoveries with recovered:true).

Options:
    --ports P[,P...]         lhttpd ports for the clients (required)
    --pubs P[,P...]          one publisher on each of these ports (default: the first port)
    --clients N              subscribers (default 100), besides the publishers
    --procs K                spread the subscribers over K processes (default 1)
    --channel CH             (default chat.fleet)
    --window W --rate R --count N --stop-file F
    --history-limit N        (default 1000)
    --local-ports FILE       every client's local port, one a line, once all are ready
    --timeout S              deadline for the first subscribe and for the final catch-up
                             (default 30)
    --status FILE
Exit status 0 when every check passed, 1 otherwise, 2 on a usage error.
"""

import asyncio
import base64
import json
import os
import socket
import sys
import time

sys.dont_write_bytecode = True


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def parse(data):
    """(command, [(key, value)...] in order, body) of an LHTTP message."""
    i = data.find(b"\r\n\r\n")
    if i < 0:
        head, body = data, b""
    else:
        head, body = data[:i], data[i + 4:]
    lines = head.split(b"\r\n")
    cmd = lines[0][10:].decode("latin-1") if lines[0].startswith(b"LHTTP/1.0 ") else None
    hs = []
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        hs.append((k.decode("latin-1").lower(), v.decode("latin-1")))
    return cmd, hs, body


def header(hs, k):
    for a, b in hs:
        if a == k:
            return b
    return None


def mask(data, key):
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def frame(op, data):
    n = len(data)
    if n < 126:
        h = bytes([0x80 | op, 0x80 | n])
    elif n < 65536:
        h = bytes([0x80 | op, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        h = bytes([0x80 | op, 0x80 | 127]) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return h + key + mask(data, key)


class WS(asyncio.Protocol):
    """One WebSocket connection: on_msg(bytes) for each data message, `closed` (a future)
    resolves with a description when the connection ends."""

    def __init__(self, on_msg):
        self.on_msg = on_msg
        self.buf = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.tr = None
        self.frag = None
        self.close_code = None

    def connection_made(self, tr):
        self.tr = tr

    def send(self, data, op=1):
        if self.tr is not None and not self.tr.is_closing():
            self.tr.write(frame(op, data))

    def data_received(self, data):
        self.buf += data
        if not self.upgraded.done():
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            status = bytes(self.buf[:i]).split(b"\r\n", 1)[0]
            del self.buf[:i + 4]
            if b" 101 " not in status + b" ":
                self.upgraded.set_exception(OSError("handshake: %r" % status))
                self.tr.close()
                return
            self.upgraded.set_result(True)
        buf = self.buf
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            hl = 2
            if n == 126:
                hl = 4
                if len(buf) < hl:
                    break
                n = int.from_bytes(buf[2:4], "big")
            elif n == 127:
                hl = 10
                if len(buf) < hl:
                    break
                n = int.from_bytes(buf[2:10], "big")
            if len(buf) < hl + n:
                break
            b0 = buf[0]
            payload = bytes(buf[hl:hl + n])
            del buf[:hl + n]
            op = b0 & 0x0F
            if op == 8:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                if not self.tr.is_closing():
                    self.tr.write(frame(8, payload[:2]))
                    self.tr.close()
                continue
            if op == 9:
                self.send(payload, 10)
                continue
            if op == 10:
                continue
            if op != 0:
                self.frag = bytearray()
            self.frag += payload
            if b0 & 0x80:
                m, self.frag = bytes(self.frag), None
                self.on_msg(m)

    def connection_lost(self, exc):
        if not self.upgraded.done():
            self.upgraded.set_exception(OSError("connection lost during the handshake"))
        if not self.closed.done():
            self.closed.set_result("close %s" % self.close_code if self.close_code else
                                   "eof")


async def ws_open(port, on_msg, timeout):
    loop = asyncio.get_running_loop()
    tr, pr = await asyncio.wait_for(
        loop.create_connection(lambda: WS(on_msg), "127.0.0.1", port), timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    tr.write(("GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
              "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n" % (port, key)).encode())
    try:
        await asyncio.wait_for(pr.upgraded, timeout)
    except BaseException:
        tr.abort()
        raise
    return tr, pr


class Client:
    """A subscriber that tracks offset and epoch and recovers after each reconnect."""

    def __init__(self, fleet, name, port):
        self.fleet = fleet
        self.name = name
        self.port = port
        self.ch = fleet.ch
        self.epoch = None
        self.last = None        # offset seen last (None before the first reply)
        self.start = None       # the latest offset when it first subscribed
        self.got = []           # (offset, body) in arrival order
        self.recovering = False
        self.live = False       # subscribed (a reply came) on the current connection
        self.reconnects = 0
        self.rec_true = 0
        self.rec_false = 0
        self.bad = []
        self.ws = None
        self.local_port = None
        self.stopping = False
        self.first = asyncio.get_running_loop().create_future()

    def problem(self, text):
        self.bad.append("%s: %s" % (self.name, text))
        self.fleet.nbad += 1

    def subscribe(self):
        rec = ""
        self.recovering = self.last is not None
        if self.recovering:
            rec = "recover:%s,%d,%s\r\n" % (self.ch, self.last, self.epoch)
        self.ws.send(("LHTTP/1.0 subscribe\r\nsubscribe:%s\r\n%s\r\n" % (self.ch, rec))
                     .encode())

    def on_reply(self, hs):
        if header(hs, "channel") != self.ch:
            self.problem("subscribed for another channel: %r" % hs)
            return
        ep, off, rec = header(hs, "epoch"), header(hs, "offset"), header(hs, "recovered")
        if ep is None or len(ep) != 16 or off is None or not off.isdigit():
            # Counted, and taken as it is so that the run goes on.
            self.problem("bad subscribed reply %r" % hs)
        off = int(off) if off is not None and off.isdigit() else 0
        ep = ep or ""
        if self.recovering:
            if rec == "true":
                self.rec_true += 1
                if off != self.last:
                    self.problem("recovered:true names offset %d but the last message "
                                 "was %d" % (off, self.last))
            else:
                self.rec_false += 1
                self.problem("recovered:%s after offset %d epoch %s (reply %r)"
                             % (rec, self.last, self.epoch, hs))
                self.last = off
            if ep != self.epoch:
                self.problem("epoch changed %s -> %s" % (self.epoch, ep))
                self.epoch = ep
        else:
            if rec is not None:
                self.problem("recovered header without recover: %r" % hs)
            if self.last is None:
                self.start = off
            self.last, self.epoch = off, ep
        self.recovering = False
        self.live = True
        if not self.first.done():
            self.first.set_result(True)

    def on_data(self, cmd, hs, body):
        if len(hs) < 4 or [k for k, _ in hs[:4]] != ["offset", "prev-offset", "epoch", "channel"] \
                or hs[3][1] != self.ch:
            self.problem("headers not offset, prev-offset, epoch, channel:%s first: %r"
                         % (self.ch, hs[:5]))
            return
        if not self.live and not self.recovering:
            self.problem("a message before the subscribed reply: %r" % hs[:3])
            return
        off, prev, ep = int(hs[0][1]), int(hs[1][1]), hs[2][1]
        if ep != self.epoch:
            self.problem("message with epoch %s, expected %s" % (ep, self.epoch))
        if off <= self.last:
            self.problem("offset %d again or old (last %d)" % (off, self.last))
            return
        if prev != self.last:
            self.problem("gap: offset %d prev-offset %d, but the last seen was %d"
                         % (off, prev, self.last))
        self.last = off
        self.got.append((off, body))
        self.fleet.deliveries += 1

    def on_msg(self, data):
        cmd, hs, body = parse(data)
        if cmd == "subscribed":
            self.on_reply(hs)
        elif cmd == "m":
            self.on_data(cmd, hs, body)
        elif cmd == "error":
            self.on_error(hs)
        else:
            self.problem("unexpected message %r" % data[:200])

    def on_error(self, hs):
        self.problem("error reply %r" % hs)

    async def run(self):
        backoff = 0.02
        while not self.stopping:
            try:
                tr, self.ws = await ws_open(self.port, self.on_msg, self.fleet.timeout)
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 0.5)
                continue
            backoff = 0.02
            self.local_port = tr.get_extra_info("sockname")[1]
            self.live = False
            self.subscribe()
            await self.ws.closed
            self.live = False
            self.recovering = False
            if self.stopping:
                break
            self.reconnects += 1
            self.on_lost()

    def on_lost(self):
        pass

    def close(self):
        self.stopping = True
        if self.ws is not None and self.ws.tr is not None:
            self.ws.tr.abort()


class Publisher(Client):
    def __init__(self, fleet, name, port, idx):
        super().__init__(fleet, name, port)
        self.idx = idx
        self.next = 1           # the next new message
        self.unacked = []       # k, oldest first (sent or to send again)
        self.sent = set()       # of unacked: sent on the current connection
        self.acked = {}         # k -> offset
        self.resent_ks = set()  # sent more than once (so maybe stored after later ones)
        self.resent = 0
        self.errors = 0
        self.wake = asyncio.Event()
        self.retry_at = 0.0     # after an error reply: not before then
        self.done = False

    def body(self, k):
        return b"P%d-%d" % (self.idx, k)

    def on_data(self, cmd, hs, body):
        super().on_data(cmd, hs, body)
        pfx = b"P%d-" % self.idx
        if body.startswith(pfx) and self.got and self.got[-1][1] == body:
            k = int(body[len(pfx):])
            if k in self.acked:
                return  # stored twice (counted from the history)
            self.acked[k] = self.got[-1][0]
            self.fleet.acked += 1
            if k in self.unacked:
                self.unacked.remove(k)
                self.sent.discard(k)
            self.wake.set()

    def on_reply(self, hs):
        super().on_reply(hs)
        self.wake.set()

    def on_error(self, hs):
        # Refused (503): the oldest sent message was not stored; send it again.
        self.errors += 1
        if header(hs, "code") != "503" or self.fleet.window != 1:
            self.problem("publisher got %r" % hs)
        self.sent.clear()
        self.retry_at = time.monotonic() + 0.1
        self.wake.set()

    def on_lost(self):
        self.sent.clear()
        self.wake.set()

    async def pump(self):
        rate = self.fleet.rate
        t0 = time.monotonic()
        nsent = 0
        stopped = None
        while True:
            stop = self.fleet.stop_now() or (self.fleet.count and self.next > self.fleet.count)
            if stop and not self.unacked:
                break
            if stop and stopped is None:
                stopped = time.monotonic()
            if stopped is not None and time.monotonic() > stopped + self.fleet.timeout:
                self.problem("%d messages never acknowledged, first %s"
                             % (len(self.unacked), self.unacked[:5]))
                break
            if self.live:
                for k in self.unacked:
                    if k not in self.sent and time.monotonic() >= self.retry_at:
                        self.resent += 1
                        self.resent_ks.add(k)
                        self.ws.send(b"LHTTP/1.0 m\r\npublish:%s\r\n\r\n%s"
                                     % (self.ch.encode(), self.body(k)))
                        self.sent.add(k)
                while (not stop and self.live and len(self.unacked) < self.fleet.window and
                       (rate == 0 or nsent < (time.monotonic() - t0) * rate)):
                    k = self.next
                    self.next += 1
                    nsent += 1
                    self.unacked.append(k)
                    self.ws.send(b"LHTTP/1.0 m\r\npublish:%s\r\n\r\n%s"
                                 % (self.ch.encode(), self.body(k)))
                    self.sent.add(k)
                    if self.fleet.count and self.next > self.fleet.count:
                        break
            self.wake.clear()
            timeout = 0.1 if self.sent or not self.live else (1.0 / rate if rate else 0.1)
            if self.errors and not self.sent:
                timeout = 0.05
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        self.done = True


class Fleet:
    def __init__(self, o):
        self.o = o
        self.ch = o["channel"]
        self.timeout = o["timeout"]
        self.window = o["window"]
        self.rate = o["rate"]
        self.count = o["count"]
        self.nbad = 0
        self.acked = 0
        self.deliveries = 0

    def stop_now(self):
        f = self.o["stop_file"]
        return f is not None and os.path.exists(f)


def stats(clients):
    return {"first_bad": [b for c in clients for b in c.bad][:3],
            "connected": sum(1 for c in clients if c.live),
            "reconnects": sum(c.reconnects for c in clients),
            "rec_true": sum(c.rec_true for c in clients),
            "rec_false": sum(c.rec_false for c in clients),
            "bad": sum(len(c.bad) for c in clients)}


def compare(clients, hist):
    """Checks each client's messages against the history: exactly the entries after the
    offset it started at. Returns (complete, mismatched, problems)."""
    complete = mism = 0
    probs = []
    for c in clients:
        start = c.start or 0
        got = list(c.got)
        want = [(o, b) for o, _, b in hist if o > start]
        if hist and hist[0][1] > start:
            # The history was cut (size, limit): compare what it still has.
            got = [(o, b) for o, b in got if o >= hist[0][0]]
        if got == want:
            complete += 1
            continue
        mism += 1
        i = 0
        while i < min(len(got), len(want)) and got[i][0] == want[i][0]:
            i += 1
        lo = max(0, i - 2)
        probs.append("%s: %d messages, history has %d after %s; first difference at #%d: "
                     "got %s, history %s" % (c.name, len(got), len(want), c.start, i,
                                             got[lo:i + 3], want[lo:i + 3]))
    return complete, mism, probs


# ---- processes ----------------------------------------------------------------------------

async def child_main(o, sock, share):
    """A process of subscribers: reports 'ready', status lines, then, given the history,
    its comparison."""
    fleet = Fleet(o)
    ports = o["ports"]
    clients = [Client(fleet, "c%d" % i, ports[i % len(ports)]) for i in share]
    tasks = [asyncio.ensure_future(c.run()) for c in clients]
    r, w = await asyncio.open_connection(sock=sock, limit=1 << 28)

    async def status():
        while True:
            w.write(("status %s\n" % json.dumps(stats(clients))).encode())
            await asyncio.sleep(0.25)

    try:
        await asyncio.wait_for(asyncio.gather(*[c.first for c in clients]), o["timeout"])
    except asyncio.TimeoutError:
        pass
    n = sum(1 for c in clients if c.first.done())
    w.write(("ready %d %s\n" % (n, json.dumps([c.local_port for c in clients]))).encode())
    st = asyncio.ensure_future(status())
    line = await r.readline()
    hist = json.loads(line.decode())
    last = hist[-1][0] if hist else 0
    deadline = time.monotonic() + o["timeout"]
    while time.monotonic() < deadline and any((c.last or 0) < last or not c.live
                                              for c in clients):
        await asyncio.sleep(0.05)
    for c in clients:
        c.close()
    st.cancel()
    hist = [(a, b, x.encode("latin-1")) for a, b, x in hist]
    complete, mism, probs = compare(clients, hist)
    res = stats(clients)
    res.update({"complete": complete, "mismatched": mism,
                "probs": probs[:5] + [b for c in clients for b in c.bad][:10],
                "deliveries": fleet.deliveries, "n": len(clients)})
    w.write(("result %s\n" % json.dumps(res)).encode())
    await w.drain()
    for t in tasks:
        t.cancel()


async def read_history(o, port):
    """The channel's history from a fresh connection: [(offset, prev, body)] oldest first,
    and the end reply's headers."""
    got = []
    end = asyncio.get_running_loop().create_future()

    def on_msg(data):
        cmd, hs, body = parse(data)
        if cmd == "history" and header(hs, "count") is not None:
            if not end.done():
                end.set_result(hs)
        elif cmd not in ("history", "error") and header(hs, "offset") is not None:
            got.append((int(header(hs, "offset")), int(header(hs, "prev-offset")), body))
        elif not end.done():
            end.set_exception(OSError("history read: %r" % data[:200]))

    tr, ws = await ws_open(port, on_msg, o["timeout"])
    ws.send(("LHTTP/1.0 history\r\nchannel:%s\r\nlimit:%d\r\n\r\n"
             % (o["channel"], o["history_limit"])).encode())
    hs = await asyncio.wait_for(end, o["timeout"])
    tr.abort()
    return got, hs


async def main_async(o, kids):
    fleet = Fleet(o)
    pubs = [Publisher(fleet, "P%d" % i, p, i) for i, p in enumerate(o["pubs"])]
    ptasks = [asyncio.ensure_future(p.run()) for p in pubs]
    readers = []
    for s in kids:
        readers.append(await asyncio.open_connection(sock=s, limit=1 << 28))
    kid_status = [dict() for _ in kids]
    ok = True
    nready = 0
    ports = []
    for r, _ in readers:
        while True:
            line = (await r.readline()).decode()
            if line.startswith("ready "):
                _, n, rest = line.split(" ", 2)
                nready += int(n)
                ports += json.loads(rest)
                break
    try:
        await asyncio.wait_for(asyncio.gather(*[p.first for p in pubs]), o["timeout"])
    except asyncio.TimeoutError:
        pass
    nready += sum(1 for p in pubs if p.first.done())
    if nready != o["clients"] + len(pubs):
        out("not-ready %d of %d" % (nready, o["clients"] + len(pubs)))
        ok = False
    if o["local_ports"]:
        with open(o["local_ports"] + ".tmp", "w") as f:
            for p in ports + [p.local_port for p in pubs]:
                f.write("%s\n" % p)
        os.rename(o["local_ports"] + ".tmp", o["local_ports"])
    out("ready %d" % nready)

    async def watch(i, r):
        while True:
            line = (await r.readline()).decode()
            if not line:
                return
            if line.startswith("status "):
                kid_status[i] = json.loads(line[7:])
            elif line.startswith("result "):
                kid_status[i] = json.loads(line[7:])
                kid_status[i]["final"] = True
                return

    watchers = [asyncio.ensure_future(watch(i, r)) for i, (r, _) in enumerate(readers)]

    async def status():
        while True:
            if o["status"]:
                s = stats(pubs)
                for k in kid_status:
                    for key in s:
                        s[key] += k.get(key, [] if key == "first_bad" else 0)
                with open(o["status"] + ".tmp", "w") as f:
                    f.write("acked %d connected %d reconnects %d recovered-true %d "
                            "recovered-false %d bad %d\n"
                            % (fleet.acked, s["connected"], s["reconnects"], s["rec_true"],
                               s["rec_false"], s["bad"]))
                    for b in s["first_bad"][:5]:
                        f.write("bad %s\n" % b)
                os.rename(o["status"] + ".tmp", o["status"])
            await asyncio.sleep(0.25)

    st = asyncio.ensure_future(status())
    out("publishing")
    await asyncio.gather(*[p.pump() for p in pubs])
    # The history as the first port's worker sees it once it has the newest acknowledged
    # message (another worker may get it from NATS a moment after its publisher did).
    # A worker just started may refuse (503) until it has asked JetStream: asked again.
    newest = max([off for p in pubs for off in p.acked.values()] or [0])
    deadline = time.monotonic() + o["timeout"]
    hist, end, refused = [], [], []
    while True:
        try:
            hist, end = await read_history(o, o["ports"][0])
            if hist and hist[-1][0] >= newest:
                break
        except (OSError, asyncio.TimeoutError) as e:
            refused.append(str(e))
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    if refused:
        out("history-refused %d first %s" % (len(refused), refused[0][:160]))
    out("history %d first %s last %s epoch %s"
        % (len(hist), hist[0][0] if hist else "-", hist[-1][0] if hist else "-",
           header(end, "epoch")))
    probs = []
    # The history is one chain, and its end reply agrees.
    for i in range(1, len(hist)):
        if hist[i][1] != hist[i - 1][0]:
            probs.append("history: offset %d has prev-offset %d after offset %d"
                         % (hist[i][0], hist[i][1], hist[i - 1][0]))
            break
    if header(end, "count") != str(len(hist)) or \
            (hist and header(end, "offset") != str(hist[-1][0])):
        probs.append("history end reply %r for %d messages" % (end, len(hist)))
    # Every acknowledged message is in the history, with its offset.
    where = {}
    dups = 0
    for off, _, body in hist:
        if body in where:
            dups += 1
        where.setdefault(body, set()).add(off)
    for p in pubs:
        lost = [k for k, off in sorted(p.acked.items()) if off not in where.get(p.body(k), ())]
        if lost:
            probs.append("%s: %d acknowledged messages not in the history, first %s"
                         % (p.name, len(lost), lost[:5]))
        ks, seen = [], set()
        for _, _, b in hist:
            if b.startswith(b"P%d-" % p.idx) and b not in seen:
                seen.add(b)
                if int(b.split(b"-")[1]) not in p.resent_ks:
                    ks.append(int(b.split(b"-")[1]))
        if any(ks[i] <= ks[i - 1] for i in range(1, len(ks))):
            probs.append("%s: its messages are stored out of order" % p.name)
    payload = json.dumps([(a, b, x.decode("latin-1")) for a, b, x in hist]) + "\n"
    for _, w in readers:
        w.write(payload.encode())
    # The publishers catch up too.
    deadline = time.monotonic() + o["timeout"]
    last = hist[-1][0] if hist else 0
    while time.monotonic() < deadline and any((p.last or 0) < last for p in pubs):
        await asyncio.sleep(0.05)
    for p in pubs:
        p.close()
    await asyncio.wait_for(asyncio.gather(*watchers), o["timeout"] + 10)
    st.cancel()
    complete, mism, cprobs = compare(pubs, hist)
    s = stats(pubs)
    deliveries = fleet.deliveries
    for k in kid_status:
        complete += k.get("complete", 0)
        mism += k.get("mismatched", 0)
        cprobs += k.get("probs", [])
        deliveries += k.get("deliveries", 0)
        for key in s:
            s[key] += k.get(key, [] if key == "first_bad" else 0)
        if not k.get("final"):
            cprobs.append("a process of clients did not report")
    out("published %d resent %d errors %d dup-bodies %d"
        % (fleet.acked, sum(p.resent for p in pubs), sum(p.errors for p in pubs), dups))
    out("clients %d complete %d mismatched %d" % (o["clients"] + len(pubs), complete, mism))
    out("reconnects %d recovered-true %d recovered-false %d bad %d"
        % (s["reconnects"], s["rec_true"], s["rec_false"], s["bad"]))
    out("deliveries %d" % deliveries)
    probs += cprobs + [b for p in pubs for b in p.bad]
    for p in probs[:12]:
        out("bad " + p)
    ok = ok and not probs and mism == 0 and s["bad"] == 0 and \
        complete == o["clients"] + len(pubs)
    out("ok" if ok else "FAIL")
    for t in ptasks:
        t.cancel()
    return ok


async def recover_one(name, port, ch, epoch, since, delay, timeout):
    """One recovery, sent delay seconds from now: what came before the reply, and the
    reply, in one line."""
    got = []
    end = asyncio.get_running_loop().create_future()

    def on_msg(data):
        cmd, hs, body = parse(data)
        if cmd == "subscribed":
            if not end.done():
                end.set_result(hs)
        elif cmd == "error" or header(hs, "offset") is None:
            if not end.done():
                end.set_exception(OSError("recover: %r" % data[:200]))
        else:
            got.append((int(header(hs, "offset")), int(header(hs, "prev-offset"))))

    t0 = time.monotonic()
    while True:
        try:
            tr, ws = await ws_open(port, on_msg, timeout)
            break
        except OSError:
            # HC_RETRY_CONNECT: a server that is starting (connect as soon as it accepts).
            if not os.environ.get("HC_RETRY_CONNECT") or time.monotonic() > t0 + timeout:
                raise
            await asyncio.sleep(0.005)
    await asyncio.sleep(delay)
    ws.send(("LHTTP/1.0 subscribe\r\nsubscribe:%s\r\nrecover:%s,%d,%s\r\n\r\n"
             % (ch, ch, since, epoch)).encode())
    try:
        hs = await asyncio.wait_for(end, timeout)
    except asyncio.TimeoutError:
        out("%s timeout after %d messages" % (name, len(got)))
        return
    finally:
        tr.abort()
    chain = all(got[i][1] == (got[i - 1][0] if i else since) for i in range(len(got)))
    out("%s recovered %s offset %s epoch %s count %d first %s last %s chain %s"
        % (name, header(hs, "recovered"), header(hs, "offset"), header(hs, "epoch"),
           len(got), got[0][0] if got else "-", got[-1][0] if got else "-",
           "ok" if chain else "bad"))


async def recover_async(port, ch, epoch, specs, timeout):
    jobs = []
    for i, sp in enumerate(specs):
        since, _, delay = sp.partition(":")
        jobs.append(recover_one("r%d" % (i + 1), port, ch, epoch, int(since),
                                int(delay or 0) / 1000.0, timeout))
    await asyncio.gather(*jobs)


async def offsets_async(port, ch, limit, timeout):
    o = {"channel": ch, "history_limit": limit, "timeout": timeout}
    got, hs = await read_history(o, port)
    for off, prev, _ in got:
        out("%d %d" % (off, prev))
    out("end count %s offset %s epoch %s" % (header(hs, "count"), header(hs, "offset"),
                                             header(hs, "epoch")))


def usage(msg):
    sys.stderr.write("histclient: %s\n" % msg)
    sys.exit(2)


def main():
    a = sys.argv[1:]
    if len(a) >= 5 and a[0] == "recover":
        timeout = float(os.environ.get("HC_TIMEOUT", "10"))
        asyncio.run(recover_async(int(a[1]), a[2], a[3], a[4:], timeout))
        return
    if len(a) >= 4 and a[0] == "offsets":
        asyncio.run(offsets_async(int(a[1]), a[2], int(a[3]),
                                  float(os.environ.get("HC_TIMEOUT", "10"))))
        return
    if not a or a[0] != "fleet":
        usage("usage: histclient.py fleet [options] (see the top of the file)")
    o = {"ports": None, "pubs": None, "clients": 100, "procs": 1, "channel": "chat.fleet",
         "window": 1, "rate": 0.0, "count": 0, "stop_file": None, "history_limit": 1000,
         "local_ports": None, "timeout": 30.0, "status": None}
    i = 1
    while i < len(a):
        k = a[i][2:].replace("-", "_")
        if k not in o or i + 1 >= len(a):
            usage("unknown option %s" % a[i])
        v = a[i + 1]
        if k in ("ports", "pubs"):
            o[k] = [int(x) for x in v.split(",")]
        elif k in ("clients", "procs", "window", "count", "history_limit"):
            o[k] = int(v)
        elif k in ("rate", "timeout"):
            o[k] = float(v)
        else:
            o[k] = v
        i += 2
    if not o["ports"]:
        usage("--ports is required")
    if o["pubs"] is None:
        o["pubs"] = o["ports"][:1]
    if not o["count"] and not o["stop_file"]:
        usage("--count or --stop-file is needed")
    kids = []
    for p in range(o["procs"]):
        a_, b_ = socket.socketpair()
        share = list(range(p, o["clients"], o["procs"]))
        pid = os.fork()
        if pid == 0:
            a_.close()
            for s in kids:
                s.close()
            try:
                asyncio.run(child_main(o, b_, share))
            finally:
                os._exit(0)
        b_.close()
        kids.append(a_)
    ok = asyncio.run(main_async(o, kids))
    for _ in kids:
        os.wait()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
