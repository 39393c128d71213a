#!/usr/bin/python3
"""wsclient: a well-behaved WebSocket client for lhttpd's integration tests, built on the
independent python websockets library (10.x), so that lhttpd is checked against a client
it was not written with. Prints one line per event for bats to assert on.

Usage: wsclient.py [--subprotocol P] [--origin O] [--timeout S] URL STEP...

Data specs are those of wsprobe.py (str:, hex:, rep:N:, rand:N, utf8:N).
Steps:
    text:DATA      send a text message (DATA must be UTF-8)
    binary:DATA    send a binary message
    recv           read a message: `text LEN TEXT` or `binary LEN HEX`
    echo           read a message and compare it with the last one sent:
                   `echo ok text|binary LEN` or `echo mismatch ...`
    ping:DATA      send a ping and wait for its pong: `pong ok`
    close[:CODE]   close the connection (default 1000): `closed CODE REASON`
On connect it prints `connected` and `subprotocol P|-`; a refused handshake prints
`rejected STATUS`; a connection closed by the server prints `closed CODE REASON`;
`timeout` at a step's deadline.
"""

import asyncio
import os
import sys

import websockets

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsprobe import data_spec, show, SHOW  # noqa: E402  (shared data specs and output)
import hashlib  # noqa: E402


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def msg_line(m):
    if isinstance(m, str):
        b = m.encode()
        return ("text %d %s" % (len(b), show(b))).rstrip()
    shown = m[:SHOW // 2].hex()
    if len(m) > SHOW // 2:
        shown += "...sha256=" + hashlib.sha256(m).hexdigest()[:16]
    return ("binary %d %s" % (len(m), shown)).rstrip()


async def run(url, steps, subprotocol, origin, timeout):
    kw = {"max_size": None, "ping_interval": None, "open_timeout": timeout,
          "close_timeout": timeout}
    if subprotocol:
        kw["subprotocols"] = [subprotocol]
    if origin:
        kw["origin"] = origin
    try:
        ws = await websockets.connect(url, **kw)
    except websockets.exceptions.InvalidStatusCode as e:
        out("rejected %d" % e.status_code)
        return
    except (OSError, asyncio.TimeoutError, websockets.exceptions.InvalidHandshake) as e:
        out("connect-failed %s" % type(e).__name__)
        return
    out("connected")
    out("subprotocol %s" % (ws.subprotocol or "-"))
    last = None
    try:
        for step in steps:
            name, _, arg = step.partition(":")
            if name == "text":
                last = data_spec(arg).decode()
                await ws.send(last)
            elif name == "binary":
                last = data_spec(arg)
                await ws.send(last)
            elif name in ("recv", "echo"):
                m = await asyncio.wait_for(ws.recv(), timeout)
                if name == "recv":
                    out(msg_line(m))
                elif m == last and type(m) is type(last):
                    out("echo ok %s %d" % ("text" if isinstance(m, str) else "binary",
                                           len(m.encode() if isinstance(m, str) else m)))
                else:
                    out("echo mismatch got " + msg_line(m))
            elif name == "ping":
                waiter = await ws.ping(data_spec(arg))
                await asyncio.wait_for(waiter, timeout)
                out("pong ok")
            elif name == "close":
                await ws.close(int(arg or 1000))
                out(("closed %s %s" % (ws.close_code, ws.close_reason or "")).rstrip())
                return
            else:
                sys.stderr.write("wsclient: unknown step %s\n" % name)
                sys.exit(2)
    except asyncio.TimeoutError:
        out("timeout")
    except websockets.exceptions.ConnectionClosed as e:
        out(("closed %s %s" % (e.rcvd.code if e.rcvd else "none",
                               e.rcvd.reason if e.rcvd else "")).rstrip())
        return
    await ws.close()


def main(argv):
    subprotocol = origin = None
    timeout = 5.0
    args = []
    i = 0
    while i < len(argv):
        if argv[i] in ("--subprotocol", "--origin", "--timeout") and i + 1 < len(argv):
            v = argv[i + 1]
            if argv[i] == "--subprotocol":
                subprotocol = v
            elif argv[i] == "--origin":
                origin = v
            else:
                timeout = float(v)
            i += 2
            continue
        args.append(argv[i])
        i += 1
    if not args:
        sys.stderr.write(__doc__)
        return 2
    asyncio.run(run(args[0], args[1:], subprotocol, origin, timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
