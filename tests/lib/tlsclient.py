#!/usr/bin/python3
"""tlsclient: a wss:// LHTTP client for lhttpd's TLS tests (tls.bats), on python's ssl
module and the websockets library, so that lhttpd's TLS is checked against an
implementation it was not written with. Prints one line per event.

Usage: tlsclient.py --ca CA [--servername NAME] [--timeout S] URL STEP...

Steps:
    sub:LIST       subscribe to LIST, then an LHTTP ping; prints `subscribed` at its pong
    recv           read one message: `got TEXT` (CR and LF shown as \\r \\n)
    text:DATA      send DATA as a text message
    file:FILE      send FILE's contents as a text message
    echo:FILE      read a message and compare it with FILE: `echo ok LEN` or `echo mismatch`
    await:FILE     wait until FILE exists
    print:WORD     print WORD
On connect it prints `connected VERSION SERIAL` (the TLS version and the serial number of
the server's certificate, in hex); a failed connection prints `failed REASON`.
"""

import argparse
import asyncio
import os
import ssl
import sys

import websockets


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def show(m):
    if isinstance(m, bytes):
        m = m.decode("utf-8", "replace")
    return m.replace("\r", "\\r").replace("\n", "\\n")


def serial_of(der):
    # The serial is the first INTEGER of tbsCertificate after the optional [0] version.
    import subprocess
    p = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"],
                       input=der, stdout=subprocess.PIPE, check=True)
    return p.stdout.decode().strip().split("=", 1)[1]


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ca", required=True)
    ap.add_argument("--servername")
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("url")
    ap.add_argument("steps", nargs="*")
    a = ap.parse_args()
    ctx = ssl.create_default_context(cafile=a.ca)
    kw = {"ssl": ctx}
    if a.servername:
        kw["server_hostname"] = a.servername
    try:
        ws = await asyncio.wait_for(websockets.connect(a.url, **kw), a.timeout)
    except Exception as e:  # noqa: BLE001 (any failure is the answer)
        out("failed %s" % str(e).replace("\n", " "))
        return 1
    sslobj = ws.transport.get_extra_info("ssl_object")
    out("connected %s %s" % (sslobj.version(), serial_of(sslobj.getpeercert(True))))
    for step in a.steps:
        kind, _, arg = step.partition(":")
        try:
            if kind == "sub":
                await ws.send("LHTTP/1.0 subscribe\r\nsubscribe:%s\r\n\r\n" % arg)
                await ws.send("LHTTP/1.0 ping\r\n\r\n")
                while True:
                    m = await asyncio.wait_for(ws.recv(), a.timeout)
                    if show(m).startswith("LHTTP/1.0 pong"):
                        break
                out("subscribed")
            elif kind == "recv":
                m = await asyncio.wait_for(ws.recv(), a.timeout)
                out("got " + show(m))
            elif kind == "text":
                await ws.send(arg)
            elif kind == "file":
                with open(arg) as f:
                    await ws.send(f.read())
            elif kind == "echo":
                with open(arg) as f:
                    want = f.read()
                m = await asyncio.wait_for(ws.recv(), a.timeout)
                out("echo ok %d" % len(m) if m == want else "echo mismatch %d" % len(m))
            elif kind == "await":
                for _ in range(int(a.timeout * 20)):
                    if os.path.exists(arg):
                        break
                    await asyncio.sleep(0.05)
                else:
                    out("timeout")
                    return 1
            elif kind == "print":
                out(arg)
            else:
                out("bad step " + step)
                return 2
        except asyncio.TimeoutError:
            out("timeout")
            return 1
        except websockets.ConnectionClosed as e:
            out("closed %s" % e.code)
            return 1
    await ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
