#!/usr/bin/python3
"""hsstorm: many WebSocket handshakes at once against lhttpd, for the webhook cap and
storm tests. Raw sockets (no WebSocket library): only the handshake's answer is read.

Usage: hsstorm.py PORT N [--cookie C] [--answers K] [--wait S] [--stop-file F]

Opens N connections to 127.0.0.1:PORT together and sends each a handshake (GET /, with
`Cookie: C` when given). It waits until K of them have an answer (default N) or S seconds
(default 10) have passed, then prints, one per line:
    status CODE COUNT     answers by status (ascending)
    retry-after COUNT     answers that carried a Retry-After header
    pending COUNT         connections with no answer yet
    failed COUNT          connections that could not be made or were reset unanswered
With --stop-file F it then prints `holding`, keeps every connection open (the upgraded
ones and the pending ones) until F exists, closes them all at once (no close frame) and
prints `closed COUNT`. Exit status 0; 2 on a usage error.
"""

import asyncio
import os
import sys
import time

sys.dont_write_bytecode = True

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Conn:
    def __init__(self):
        self.writer = None
        self.status = None
        self.retry_after = False
        self.failed = False


async def one(port, cookie, c, answered):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        c.failed = True
        answered.release()
        return
    c.writer = writer
    req = ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % KEY)
    if cookie:
        req += "Cookie: %s\r\n" % cookie
    writer.write((req + "\r\n").encode())
    try:
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        c.failed = True
        answered.release()
        return
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    c.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    c.retry_after = any(l.lower().startswith("retry-after:") for l in lines[1:])
    answered.release()
    # Keep reading (and discarding) so that the server's writes never block.
    try:
        while await reader.read(65536):
            pass
    except OSError:
        pass


async def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    port, n = int(argv[0]), int(argv[1])
    opts = {"--cookie": "", "--answers": str(n), "--wait": "10", "--stop-file": ""}
    i = 2
    while i + 1 < len(argv):
        opts[argv[i]] = argv[i + 1]
        i += 2
    want = int(opts["--answers"])
    answered = asyncio.Semaphore(0)
    conns = [Conn() for _ in range(n)]
    tasks = [asyncio.ensure_future(one(port, opts["--cookie"], c, answered)) for c in conns]
    deadline = time.monotonic() + float(opts["--wait"])
    got = 0
    while got < want:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            await asyncio.wait_for(answered.acquire(), left)
            got += 1
        except asyncio.TimeoutError:
            break
    counts = {}
    for c in conns:
        if c.status is not None:
            counts[c.status] = counts.get(c.status, 0) + 1
    for st in sorted(counts):
        out("status %d %d" % (st, counts[st]))
    out("retry-after %d" % sum(1 for c in conns if c.retry_after))
    out("pending %d" % sum(1 for c in conns if c.status is None and not c.failed))
    out("failed %d" % sum(1 for c in conns if c.failed))
    if opts["--stop-file"]:
        out("holding")
        while not os.path.exists(opts["--stop-file"]):
            await asyncio.sleep(0.02)
        closed = 0
        for c in conns:
            if c.writer is not None:
                c.writer.transport.abort()
                closed += 1
        out("closed %d" % closed)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
