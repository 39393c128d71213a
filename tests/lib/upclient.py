#!/usr/bin/python3
"""upclient: a WebSocket client (python websockets 10.x) for lhttpd's upstream and webhook
tests. It can send request headers (cookies), reports its own address (which lhttpd shows
a backend as X-Lhttp-Peer), times answers, and has a flood and a ping-latency mode.

Steps mode:
    upclient.py [-H 'Name: value']... [--timeout S] URL STEP...
    On connect prints `connected local=IP:PORT`; a refused handshake prints
    `rejected STATUS` and the run ends (exit 0).
    Steps (DATA: wsprobe.py data specs, e.g. 'LHTTP/1.0 x\\r\\nk:v\\r\\n\\r\\nbody'):
        send:DATA      send a text message (a binary one when DATA is not UTF-8)
        recv           read a message: `msg LEN TEXT` (escaped), `timeout`, or `closed CODE`
        timed          like recv, then `elapsed MS` since the last send
        quiet:MS       expect no message for MS ms: `quiet`, or the message that came
        close[:CODE]   close with CODE (default 1000): `closed CODE`
        drop           end the TCP connection without a close frame: `dropped`

Flood mode:
    upclient.py --flood N --rate R [--timeout S] URL DATA
    Sends N copies of DATA at about R messages a second, reading all the while, until N
    answers came or the deadline passed. Prints `answers N`, then `code C K` for each error
    code seen and `ok K` for the answers that are not errors.

Ping mode:
    upclient.py --pings MS [--wait-file F] URL
    After F exists (when given), sends `LHTTP/1.0 ping` round trips one after the other
    for MS milliseconds and prints `pings N p50 A p99 B max C` (milliseconds).
"""

import asyncio
import os
import re
import sys
import time

import websockets

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsprobe import data_spec, show  # noqa: E402


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def as_bytes(m):
    return m.encode() if isinstance(m, str) else m


def frame_of(data):
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data


async def connect(url, headers, timeout):
    return await websockets.connect(url, extra_headers=headers, max_size=None,
                                    ping_interval=None, open_timeout=timeout,
                                    close_timeout=timeout)


async def steps_mode(url, headers, timeout, steps):
    try:
        ws = await connect(url, headers, timeout)
    except websockets.exceptions.InvalidStatusCode as e:
        out("rejected %d" % e.status_code)
        return 0
    except (OSError, asyncio.TimeoutError, websockets.exceptions.InvalidHandshake) as e:
        out("connect-failed %s" % type(e).__name__)
        return 0
    host, port = ws.local_address[:2]
    out("connected local=%s:%d" % (host, port))
    sent_at = time.monotonic()
    try:
        for step in steps:
            name, _, arg = step.partition(":")
            if name == "send":
                await ws.send(frame_of(data_spec(arg)))
                sent_at = time.monotonic()
            elif name in ("recv", "timed"):
                try:
                    m = as_bytes(await asyncio.wait_for(ws.recv(), timeout))
                except asyncio.TimeoutError:
                    out("timeout")
                    return 0
                out(("msg %d %s" % (len(m), show(m))).rstrip())
                if name == "timed":
                    out("elapsed %d" % int((time.monotonic() - sent_at) * 1000))
            elif name == "quiet":
                try:
                    m = as_bytes(await asyncio.wait_for(ws.recv(), int(arg) / 1000.0))
                    out(("msg %d %s" % (len(m), show(m))).rstrip())
                except asyncio.TimeoutError:
                    out("quiet")
            elif name == "close":
                await ws.close(int(arg or 1000))
                out("closed %s" % ws.close_code)
                return 0
            elif name == "drop":
                ws.transport.abort()
                out("dropped")
                return 0
            else:
                sys.stderr.write("upclient: unknown step %s\n" % name)
                return 2
    except websockets.exceptions.ConnectionClosed as e:
        out("closed %s" % (e.rcvd.code if e.rcvd else "none"))
        return 0
    await ws.close()
    return 0


async def flood_mode(url, timeout, n, rate, data):
    ws = await connect(url, [], timeout)
    codes = {}
    got = 0
    ok = 0

    async def reader():
        nonlocal got, ok
        while got < n:
            m = as_bytes(await ws.recv())
            got += 1
            c = re.match(rb"LHTTP/1\.0 error\r\ncode:(\d+)\r\n", m)
            if c:
                codes[int(c.group(1))] = codes.get(int(c.group(1)), 0) + 1
            else:
                ok += 1

    task = asyncio.ensure_future(reader())
    msg = frame_of(data_spec(data))
    start = time.monotonic()
    for i in range(n):
        await ws.send(msg)
        delay = start + (i + 1) / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    try:
        await asyncio.wait_for(task, timeout)
    except asyncio.TimeoutError:
        pass
    out("answers %d" % got)
    for c in sorted(codes):
        out("code %d %d" % (c, codes[c]))
    out("ok %d" % ok)
    await ws.close()
    return 0


async def pings_mode(url, timeout, ms, wait_file):
    ws = await connect(url, [], timeout)
    if wait_file:
        deadline = time.monotonic() + timeout
        while not os.path.exists(wait_file) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
    rtts = []
    end = time.monotonic() + ms / 1000.0
    i = 0
    while time.monotonic() < end:
        body = "p%d" % i
        t = time.monotonic()
        await ws.send("LHTTP/1.0 ping\r\n\r\n" + body)
        m = as_bytes(await asyncio.wait_for(ws.recv(), timeout))
        rtts.append((time.monotonic() - t) * 1000)
        if not m.endswith(body.encode()):
            out("unexpected %s" % show(m))
            return 1
        i += 1
    rtts.sort()
    pick = lambda q: rtts[min(len(rtts) - 1, int(q * len(rtts)))]  # noqa: E731
    out("pings %d p50 %.1f p99 %.1f max %.1f" % (len(rtts), pick(0.5), pick(0.99), rtts[-1]))
    await ws.close()
    return 0


def main(argv):
    headers = []
    timeout = 5.0
    flood = rate = pings = None
    wait_file = None
    args = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-H", "--timeout", "--flood", "--rate", "--pings", "--wait-file") and \
                i + 1 < len(argv):
            v = argv[i + 1]
            if a == "-H":
                name, _, value = v.partition(":")
                headers.append((name.strip(), value.strip()))
            elif a == "--timeout":
                timeout = float(v)
            elif a == "--flood":
                flood = int(v)
            elif a == "--rate":
                rate = float(v)
            elif a == "--pings":
                pings = int(v)
            else:
                wait_file = v
            i += 2
            continue
        args.append(a)
        i += 1
    if not args:
        sys.stderr.write(__doc__)
        return 2
    if flood is not None:
        return asyncio.run(flood_mode(args[0], timeout, flood, rate or 1000.0, args[1]))
    if pings is not None:
        return asyncio.run(pings_mode(args[0], timeout, pings, wait_file))
    return asyncio.run(steps_mode(args[0], headers, timeout, args[1:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
