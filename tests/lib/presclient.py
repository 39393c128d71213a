#!/usr/bin/python3
"""presclient: LHTTP clients for lhttpd's presence tests (raw asyncio, stdlib only).

Usage:
  presclient.py script SECRET_FILE STEP...
      Runs the steps in order, each with a deadline (--timeout, default 10 s); prints one
      line per result. Names are client names. Steps:
        open:NAME:PORT[:USER[:INFO_JSON]]  connect (a token for USER, signed HS256 with
                                           SECRET_FILE, in ?token=; no USER: anonymous)
        sub:NAME:CH / unsub:NAME:CH       (un)subscribe; waits for the pong that follows
        close:NAME                         close with 1000
        presence:NAME:CH                   prints `NAME presence count=N users=U
                                           truncated=T listed=L who=u1,u2,...` (sorted);
                                           an error reply prints `NAME error CODE`
        stats:NAME:CH                      prints `NAME stats count=N users=U`
        until:NAME:CH:COUNT                asks presence-stats until count is COUNT; prints
                                           `NAME count COUNT after MS ms`
        events:NAME                        prints each join/leave event NAME received so
                                           far, one per line: `NAME join|leave CH USER CLIENT INFO`,
                                           or `NAME gone CH PREFIX` (a leave of every client
                                           whose id starts with PREFIX: a worker or node died),
                                           and `NAME messages K` (the join/leave messages)
        steady:NAME:CH:COUNT:MS            presence-stats says COUNT for MS ms of queries
                                           and no join/leave arrives: `NAME steady COUNT
                                           for K queries`
        burst:NAME:CH:N[:distinct]         N presence-stats queries in one write (all in
                                           flight at once; with distinct, on channels CH0
                                           to CH<N-1>); prints `NAME burst answered=A
                                           refused=R` (R: error 429 replies)
        qbench:NAME:CH:N[:list]            N presence-stats (or presence) queries in a row:
                                           `NAME qbench CMD n=N count=C p50=.. p99=.. ms`
        settle:NAME:MS                     waits until no join/leave came for MS ms
        quiet:NAME:MS                      waits MS ms and prints `NAME quiet` when no
                                           join/leave arrived meanwhile, else fails
        evcount:NAME:KIND:N                waits until NAME has N events of KIND (join,
                                           leave or gone); prints `NAME KIND N after MS ms`
        wait:FILE                          waits until FILE exists (prints `waiting FILE`
                                           first)
        say:TEXT                           prints TEXT
  presclient.py fleet PORT[,PORT...] N CHANNEL SECRET_FILE USER_PREFIX STOP_FILE [INFO_JSON]
      Opens N connections (round robin over the ports; user USER_PREFIX<i>, or anonymous
      when USER_PREFIX is "-"; INFO_JSON in each token's info claim), subscribes each to CHANNEL, prints `ready N`, and holds
      them until STOP_FILE exists; then closes them all and prints `closed N`. Counts the
      join/leave messages and events it gets: `events MESSAGES EVENTS` at the end.
Exit status: 0, 1 on a failure (printed as `FAIL ...`), 2 on a usage error.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import time

sys.dont_write_bytecode = True
TIMEOUT = 10.0


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Fail(Exception):
    pass


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(secret, user, info=None):
    claims = {"sub": user, "exp": int(time.time()) + 3600}
    if info is not None:
        claims["info"] = json.loads(info)
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b64(json.dumps(claims, separators=(",", ":")).encode())
    s = b64(hmac.new(secret, (h + "." + p).encode(), hashlib.sha256).digest())
    return h + "." + p + "." + s


def parse(data):
    i = data.find(b"\r\n\r\n")
    head, body = (data, b"") if i < 0 else (data[:i], data[i + 4:])
    lines = head.split(b"\r\n")
    cmd = lines[0][10:].decode("latin-1") if lines[0].startswith(b"LHTTP/1.0 ") else None
    hs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        hs.setdefault(k.decode("latin-1").lower(), v.decode("utf-8", "replace"))
    return cmd, hs, body


def frame(op, data):
    n = len(data)
    if n < 126:
        h = bytes([0x80 | op, 0x80 | n])
    elif n < 65536:
        h = bytes([0x80 | op, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        h = bytes([0x80 | op, 0x80 | 127]) + n.to_bytes(8, "big")
    key = os.urandom(4)
    if n == 0:
        return h + key
    k = (key * (n // 4 + 1))[:n]
    return h + key + (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


class WS(asyncio.Protocol):
    def __init__(self):
        loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.upgraded = loop.create_future()
        self.closed = loop.create_future()
        self.tr = None
        self.frag = None
        self.replies = asyncio.Queue()  # everything but join/leave
        self.events = []  # (kind, channel, user, client)
        self.evmsgs = 0
        self.nlight = 0
        self.evcond = asyncio.Event()

    def connection_made(self, tr):
        self.tr = tr

    def send(self, text, op=1):
        if self.tr is not None and not self.tr.is_closing():
            self.tr.write(frame(op, text.encode() if isinstance(text, str) else text))

    light = False  # fleet: join/leave counted, not parsed

    def on_msg(self, m):
        if self.light and (m.startswith(b"LHTTP/1.0 join\r\n") or
                           m.startswith(b"LHTTP/1.0 leave\r\n")):
            self.evmsgs += 1
            self.nlight += max(1, m.count(b'{"client":'))
            return
        cmd, hs, body = parse(m)
        if cmd in ("join", "leave"):
            self.evmsgs += 1
            ch = hs.get("channel")
            if cmd == "leave" and "gone" in hs:
                # Every client whose id starts with hs["gone"] left (its worker or node died).
                self.events.append(("gone", ch, hs["gone"], "", ""))
            elif "count" in hs:
                for e in json.loads(body):
                    self.events.append((cmd, ch, e["user"], e["client"],
                                        json.dumps(e["info"], separators=(",", ":"))))
            else:
                self.events.append((cmd, ch, hs.get("user"), hs.get("client"),
                                    hs.get("info")))
            self.evcond.set()
            return
        self.replies.put_nowait((cmd, hs, body))

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
            self.closed.set_result(True)

    async def reply(self, want):
        """The next reply whose command is in want (others are dropped)."""
        while True:
            cmd, hs, body = await asyncio.wait_for(self.replies.get(), TIMEOUT)
            if cmd in want:
                return cmd, hs, body


async def ws_open(port, tok):
    loop = asyncio.get_running_loop()
    tr, pr = await asyncio.wait_for(
        loop.create_connection(WS, "127.0.0.1", port), TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    path = "/?token=" + tok if tok else "/"
    tr.write(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
              "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n" % (path, port, key)).encode())
    await asyncio.wait_for(pr.upgraded, TIMEOUT)
    return pr


async def subscribe(c, ch, verb="subscribe"):
    c.send("LHTTP/1.0 ping\r\n%s:%s\r\n\r\nsub" % (verb, ch))
    cmd, hs, _ = await c.reply(("pong", "error"))
    if cmd == "error":
        raise Fail("%s %s: error %s %s" % (verb, ch, hs.get("code"), hs.get("reason")))


async def script(secret, steps):
    clients = {}
    for st in steps:
        p = st.split(":")
        op = p[0]
        if op == "open":
            user = p[3] if len(p) > 3 and p[3] else None
            info = ":".join(p[4:]) if len(p) > 4 else None
            clients[p[1]] = await ws_open(int(p[2]), token(secret, user, info) if user else None)
        elif op in ("sub", "unsub"):
            await subscribe(clients[p[1]], p[2], "subscribe" if op == "sub" else "unsubscribe")
        elif op == "close":
            c = clients[p[1]]
            c.send(b"\x03\xe8", 8)
            await asyncio.wait_for(c.closed, TIMEOUT)
        elif op in ("presence", "stats"):
            c = clients[p[1]]
            cmd = "presence" if op == "presence" else "presence-stats"
            c.send("LHTTP/1.0 %s\r\nchannel:%s\r\n\r\n" % (cmd, p[2]))
            rc, hs, body = await c.reply((cmd, "error"))
            if rc == "error":
                out("%s error %s" % (p[1], hs.get("code")))
            elif op == "stats":
                out("%s stats count=%s users=%s" % (p[1], hs.get("count"), hs.get("users")))
            else:
                lst = json.loads(body)
                who = sorted(e["user"] for e in lst)
                out("%s presence count=%s users=%s truncated=%s listed=%d who=%s" %
                    (p[1], hs.get("count"), hs.get("users"), hs.get("truncated"), len(lst),
                     ",".join(who)))
        elif op == "until":
            c = clients[p[1]]
            t0 = time.monotonic()
            while True:
                c.send("LHTTP/1.0 presence-stats\r\nchannel:%s\r\n\r\n" % p[2])
                rc, hs, _ = await c.reply(("presence-stats", "error"))
                if rc == "presence-stats" and hs.get("count") == p[3]:
                    break
                if time.monotonic() - t0 > TIMEOUT:
                    raise Fail("until %s: count %s, not %s" % (p[2], hs.get("count"), p[3]))
                await asyncio.sleep(0.02)
            out("%s count %s after %d ms" % (p[1], p[3], (time.monotonic() - t0) * 1000))
        elif op == "steady":
            # steady:NAME:CH:COUNT:MS  presence-stats answers COUNT, again and again, for
            # MS ms, and no join/leave arrives meanwhile.
            c = clients[p[1]]
            n0, k, t0 = len(c.events), 0, time.monotonic()
            while time.monotonic() - t0 < int(p[4]) / 1000:
                c.send("LHTTP/1.0 presence-stats\r\nchannel:%s\r\n\r\n" % p[2])
                rc, hs, _ = await c.reply(("presence-stats", "error"))
                if rc != "presence-stats" or hs.get("count") != p[3]:
                    raise Fail("steady %s: query %d answered %s count %s" %
                               (p[2], k, rc, hs.get("count")))
                k += 1
                await asyncio.sleep(0.01)
            if len(c.events) != n0:
                raise Fail("steady %s: %d join/leave events: %r" %
                           (p[2], len(c.events) - n0, c.events[n0:n0 + 5]))
            out("%s steady %s for %d queries" % (p[1], p[3], k))
        elif op == "events":
            c = clients[p[1]]
            for e in c.events:
                if e[0] == "gone":
                    out("%s gone %s %s" % (p[1], e[1], e[2]))
                else:
                    out("%s %s %s %s %s %s" % (p[1], e[0], e[1], e[2], e[3], e[4]))
            out("%s messages %d" % (p[1], c.evmsgs))
        elif op == "quiet":
            c = clients[p[1]]
            n = len(c.events)
            await asyncio.sleep(int(p[2]) / 1000)
            if len(c.events) != n:
                raise Fail("%s: %d join/leave events meanwhile: %r" %
                           (p[1], len(c.events) - n, c.events[n:]))
            out("%s quiet" % p[1])
        elif op == "burst":
            c = clients[p[1]]
            n = int(p[3])
            distinct = len(p) > 4 and p[4] == "distinct"
            q = lambda i: ("LHTTP/1.0 presence-stats\r\nchannel:%s%s\r\n\r\n" %
                           (p[2], i if distinct else "")).encode()
            c.tr.write(b"".join(frame(1, q(i)) for i in range(n)))
            answered = refused = 0
            for _ in range(n):
                rc, hs, _ = await c.reply(("presence-stats", "error"))
                if rc == "presence-stats":
                    answered += 1
                elif hs.get("code") == "429":
                    refused += 1
                else:
                    raise Fail("burst: error %s %s" % (hs.get("code"), hs.get("reason")))
            out("%s burst answered=%d refused=%d" % (p[1], answered, refused))
        elif op == "qbench":
            # qbench:NAME:CH:N[:stats|list]  N queries one after the other: latencies
            c = clients[p[1]]
            cmd = "presence" if len(p) > 4 and p[4] == "list" else "presence-stats"
            lat = []
            for _ in range(int(p[3])):
                t = time.monotonic()
                c.send("LHTTP/1.0 %s\r\nchannel:%s\r\n\r\n" % (cmd, p[2]))
                rc, hs, _ = await c.reply((cmd, "error"))
                if rc != cmd:
                    raise Fail("qbench: error %s" % hs.get("code"))
                lat.append((time.monotonic() - t) * 1000)
            lat.sort()
            q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]
            out("%s qbench %s n=%d count=%s p50=%.2f p90=%.2f p99=%.2f max=%.2f ms" %
                (p[1], cmd, len(lat), hs.get("count"), q(0.5), q(0.9), q(0.99), lat[-1]))
        elif op == "settle":
            # settle:NAME:MS  waits until no join/leave has come for MS ms (at most TIMEOUT)
            c = clients[p[1]]
            t0 = time.monotonic()
            while True:
                n = len(c.events)
                await asyncio.sleep(int(p[2]) / 1000)
                if len(c.events) == n:
                    break
                if time.monotonic() - t0 > TIMEOUT:
                    raise Fail("%s: join/leave events keep coming" % p[1])
            out("%s settled" % p[1])
        elif op == "evcount":
            c = clients[p[1]]
            t0 = time.monotonic()
            while sum(1 for e in c.events if e[0] == p[2]) < int(p[3]):
                if time.monotonic() - t0 > TIMEOUT:
                    raise Fail("%s: %d %s events, not %s" %
                               (p[1], sum(1 for e in c.events if e[0] == p[2]), p[2], p[3]))
                c.evcond.clear()
                try:
                    await asyncio.wait_for(c.evcond.wait(), 0.1)
                except asyncio.TimeoutError:
                    pass
            out("%s %s %s after %d ms" % (p[1], p[2], p[3], (time.monotonic() - t0) * 1000))
        elif op == "wait":
            out("waiting " + p[1])
            t0 = time.monotonic()
            while not os.path.exists(p[1]):
                if time.monotonic() - t0 > 60:
                    raise Fail("no " + p[1])
                await asyncio.sleep(0.02)
        elif op == "say":
            out(":".join(p[1:]))
        else:
            raise Fail("unknown step " + st)


async def fleet(ports, n, ch, secret, prefix, stop, info=None):
    conns = []
    sem = asyncio.Semaphore(200)

    async def one(i):
        async with sem:
            tok = token(secret, "%s%d" % (prefix, i), info) if prefix != "-" else None
            c = await ws_open(ports[i % len(ports)], tok)
            c.light = True
            await subscribe(c, ch)
            conns.append(c)

    await asyncio.gather(*(one(i) for i in range(n)))
    out("ready %d" % len(conns))
    while not os.path.exists(stop):
        await asyncio.sleep(0.05)
    for c in conns:
        c.send(b"\x03\xe8", 8)
    await asyncio.wait([asyncio.ensure_future(asyncio.wait_for(c.closed, TIMEOUT)) for c in conns])
    out("events %d %d" % (sum(c.evmsgs for c in conns), sum(c.nlight for c in conns)))
    out("closed %d" % len(conns))


def main():
    global TIMEOUT
    args = sys.argv[1:]
    if "--timeout" in args:
        i = args.index("--timeout")
        TIMEOUT = float(args[i + 1])
        del args[i:i + 2]
    if len(args) < 2 or args[0] not in ("script", "fleet"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if args[0] == "script":
            secret = open(args[1], "rb").read().rstrip(b"\r\n")
            asyncio.run(script(secret, args[2:]))
        else:
            ports = [int(x) for x in args[1].split(",")]
            secret = open(args[4], "rb").read().rstrip(b"\r\n")
            asyncio.run(fleet(ports, int(args[2]), args[3], secret, args[5], args[6],
                              args[7] if len(args) > 7 else None))
    except (Fail, OSError, asyncio.TimeoutError, KeyError) as e:
        out("FAIL %s: %s" % (type(e).__name__, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
