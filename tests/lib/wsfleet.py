#!/usr/bin/python3
"""wsfleet: groups of LHTTP clients for lhttpd's metrics tests. Each mode prints one line
per milestone so that bats can wait on its output file; none of them sleeps a fixed time.

Usage: wsfleet.py MODE URL [options]        URL is ws://127.0.0.1:PORT/PATH

Modes:
  hold N       open N connections, subscribe each to the --channel(s) (a `ping` carrying
               the subscribe header; its pong proves the subscription is made), print
               `ready N`, then count what arrives. With --expect K, print `got-all K`
               once every connection has K messages. When --stop-file exists, close
               every connection with --close (default 1000) and print
               `received TOTAL MIN MAX`. A connection the server closes prints
               `server-closed CODE`.
  publish M    one connection publishes M messages (--size bytes of body, default 16)
               to the --channel(s), then waits for the pong of a final ping (so the
               server has handled every publish) and closes with 1000: `published M`.
  traffic      --clients K connections, each subscribed to --channel and publishing
               every --interval-ms; a connection that ends (1012 on a reload, 1006 when
               its worker dies) is reopened. Prints `running` once all K are subscribed;
               when --stop-file exists, closes them and prints
               `traffic published P received R reopened X closes CODE:N,...`.
  slow         a client that subscribes to --channel, prints `ready`, and then reads
               nothing (SO_RCVBUF --rcvbuf, default 4096) until --stop-file exists;
               then it reads to the close frame: `close CODE` (or `eof`); with --abort
               it closes its socket instead, unread data and all (an RST): `aborted`.

Common options: --channel C (repeatable; default "c"), --origin O, --timeout S (deadline
for each connect and each wait for a reply; default 10).
Exit status: 0; 1 when a connection or an expected reply fails; 2 on a usage error.
"""

import asyncio
import base64
import os
import socket
import struct
import sys
import time
import urllib.parse

import websockets

sys.dont_write_bytecode = True


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Fail(Exception):
    pass


def subscribe_msg(channels):
    return "LHTTP/1.0 ping\r\nsubscribe:%s\r\n\r\nsub" % " ".join(channels)


def publish_msg(channels, body):
    return "LHTTP/1.0 chat\r\npublish:%s\r\n\r\n%s" % (" ".join(channels), body)


def is_pong(m):
    return isinstance(m, str) and m.startswith("LHTTP/1.0 pong")


async def connect(url, opts):
    kw = {"max_size": None, "ping_interval": None, "open_timeout": opts["timeout"],
          "close_timeout": opts["timeout"]}
    if opts["origin"]:
        kw["origin"] = opts["origin"]
    return await websockets.connect(url, **kw)


async def subscribe(ws, opts):
    """Subscribes and waits for the pong; messages before it are not expected."""
    await ws.send(subscribe_msg(opts["channels"]))
    while True:
        m = await asyncio.wait_for(ws.recv(), opts["timeout"])
        if is_pong(m):
            return
        if isinstance(m, str) and m.startswith("LHTTP/1.0 error"):
            raise Fail("subscribe refused: %r" % m[:200])


async def stop_file_appears(path):
    while not os.path.exists(path):
        await asyncio.sleep(0.02)


# ---- hold ------------------------------------------------------------------------------

async def hold(url, n, opts):
    conns = []

    async def open_one():
        ws = await connect(url, opts)
        await subscribe(ws, opts)
        return ws

    try:
        conns = await asyncio.gather(*(open_one() for _ in range(n)))
    except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException,
            Fail) as e:
        out("failed %s %s" % (type(e).__name__, e))
        return 1
    out("ready %d" % n)
    counts = [0] * n
    announced = False
    server_closed = []

    async def reader(i, ws):
        nonlocal announced
        try:
            async for _m in ws:
                counts[i] += 1
                if opts["expect"] and not announced and min(counts) >= opts["expect"]:
                    announced = True
                    out("got-all %d" % opts["expect"])
        except websockets.exceptions.ConnectionClosed:
            pass
        if not stopping:
            code = ws.close_code
            server_closed.append(code)
            out("server-closed %s" % code)

    stopping = False
    readers = [asyncio.ensure_future(reader(i, ws)) for i, ws in enumerate(conns)]
    await stop_file_appears(opts["stop_file"])
    stopping = True
    await asyncio.gather(*(ws.close(opts["close"]) for ws in conns), return_exceptions=True)
    await asyncio.gather(*readers, return_exceptions=True)
    out("received %d %d %d" % (sum(counts), min(counts), max(counts)))
    return 0


# ---- publish ---------------------------------------------------------------------------

async def publish(url, m, opts):
    try:
        ws = await connect(url, opts)
        body = ("x" * opts["size"])
        for i in range(m):
            b = ("%d:" % i + body)[:max(opts["size"], len("%d:" % i))]
            await ws.send(publish_msg(opts["channels"], b))
        await ws.send("LHTTP/1.0 ping\r\n\r\nend")
        while True:
            r = await asyncio.wait_for(ws.recv(), opts["timeout"])
            if is_pong(r):
                break
            if isinstance(r, str) and r.startswith("LHTTP/1.0 error"):
                out("error-reply %s" % r.replace("\r\n", " ")[:200])
        await ws.close(1000)
    except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
        out("failed %s %s" % (type(e).__name__, e))
        return 1
    out("published %d" % m)
    return 0


# ---- traffic ---------------------------------------------------------------------------

async def traffic(url, opts):
    k = opts["clients"]
    stats = {"published": 0, "received": 0, "reopened": 0}
    closes = {}
    subscribed = set()
    done = asyncio.Event()

    async def client(i):
        first = True
        while not done.is_set():
            try:
                ws = await connect(url, opts)
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException):
                await asyncio.sleep(0.02)  # the listener is between workers; try again
                continue
            if not first:
                stats["reopened"] += 1
            first = False
            try:
                await subscribe(ws, opts)
                subscribed.add(i)

                async def rd():
                    async for _m in ws:
                        stats["received"] += 1

                reader = asyncio.ensure_future(rd())
                n = 0
                while not done.is_set() and not reader.done():
                    await ws.send(publish_msg(opts["channels"], "t%d.%d" % (i, n)))
                    stats["published"] += 1
                    n += 1
                    try:
                        await asyncio.wait_for(asyncio.shield(done.wait()),
                                               opts["interval_ms"] / 1000.0)
                    except asyncio.TimeoutError:
                        pass
                if done.is_set():
                    await ws.close(1000)
                await asyncio.gather(reader, return_exceptions=True)
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException,
                    Fail):
                pass
            code = ws.close_code
            if not done.is_set():
                closes[code] = closes.get(code, 0) + 1

    async def announce():
        while len(subscribed) < k:
            await asyncio.sleep(0.01)
        out("running")

    tasks = [asyncio.ensure_future(client(i)) for i in range(k)]
    ann = asyncio.ensure_future(announce())
    await stop_file_appears(opts["stop_file"])
    done.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    ann.cancel()
    out("traffic published %d received %d reopened %d closes %s" % (
        stats["published"], stats["received"], stats["reopened"],
        ",".join("%s:%d" % (c, n) for c, n in sorted(closes.items(), key=str)) or "-"))
    return 0


# ---- slow (raw socket: the websockets library would keep reading) -----------------------

def slow(url, opts):
    u = urllib.parse.urlsplit(url)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, opts["rcvbuf"])
    s.settimeout(opts["timeout"])
    s.connect((u.hostname, u.port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (u.path or "/", u.netloc, key)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise Fail("eof during the handshake")
        buf += d
    head, _, buf = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise Fail("handshake refused: %r" % head[:100])
    payload = subscribe_msg(opts["channels"]).encode()
    mask = os.urandom(4)
    hdr = bytes([0x81, 0x80 | len(payload)]) if len(payload) < 126 else \
        bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(payload))
    s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def frame():
        nonlocal buf

        def need(n):
            nonlocal buf
            while len(buf) < n:
                d = s.recv(65536)
                if not d:
                    raise EOFError
                buf += d
        need(2)
        op, ln = buf[0] & 0x0F, buf[1] & 0x7F
        off = 2
        if ln == 126:
            need(4)
            ln, off = struct.unpack("!H", buf[2:4])[0], 4
        elif ln == 127:
            need(10)
            ln, off = struct.unpack("!Q", buf[2:10])[0], 10
        need(off + ln)
        data, buf = buf[off:off + ln], buf[off + ln:]
        return op, data

    while True:
        op, data = frame()
        if op == 1 and data.startswith(b"LHTTP/1.0 pong"):
            break
    out("ready")
    while not os.path.exists(opts["stop_file"]):
        time.sleep(0.02)
    if opts["abort"]:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        out("aborted")
        return 0
    s.settimeout(opts["timeout"])
    try:
        while True:
            op, data = frame()
            if op == 8:
                out("close %d" % struct.unpack("!H", data[:2])[0] if len(data) >= 2
                    else "close none")
                return 0
    except EOFError:
        out("eof")
    except ConnectionResetError:
        out("reset")
    return 0


def main(argv):
    opts = {"channels": [], "origin": None, "timeout": 10.0, "stop_file": None,
            "expect": 0, "close": 1000, "size": 16, "clients": 4, "interval_ms": 20,
            "rcvbuf": 4096, "abort": False}
    args = []
    i = 0
    valued = {"--channel": "channels", "--origin": "origin", "--timeout": "timeout",
              "--stop-file": "stop_file", "--expect": "expect", "--close": "close",
              "--size": "size", "--clients": "clients", "--interval-ms": "interval_ms",
              "--rcvbuf": "rcvbuf"}
    while i < len(argv):
        a = argv[i]
        if a in valued:
            if i + 1 >= len(argv):
                sys.stderr.write("wsfleet: %s needs a value\n" % a)
                return 2
            k, v = valued[a], argv[i + 1]
            if k == "channels":
                opts[k].append(v)
            elif k in ("origin", "stop_file"):
                opts[k] = v
            elif k == "timeout":
                opts[k] = float(v)
            else:
                opts[k] = int(v)
            i += 2
            continue
        if a == "--abort":
            opts["abort"] = True
        else:
            args.append(a)
        i += 1
    opts["channels"] = opts["channels"] or ["c"]
    if len(args) < 2:
        sys.stderr.write(__doc__)
        return 2
    mode, url = args[0], args[1]
    if mode in ("hold", "traffic", "slow") and not opts["stop_file"]:
        sys.stderr.write("wsfleet: %s needs --stop-file\n" % mode)
        return 2
    try:
        if mode == "hold" and len(args) == 3:
            return asyncio.run(hold(url, int(args[2]), opts))
        if mode == "publish" and len(args) == 3:
            return asyncio.run(publish(url, int(args[2]), opts))
        if mode == "traffic":
            return asyncio.run(traffic(url, opts))
        if mode == "slow":
            return slow(url, opts)
    except (Fail, OSError, EOFError) as e:
        out("failed %s %s" % (type(e).__name__, e))
        return 1
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
