#!/usr/bin/env python3
"""A plain NATS subscriber for the tests: natswatch.py PORT SUBJECT

Speaks the NATS client protocol (CONNECT, SUB, PING/PONG) over TCP to 127.0.0.1:PORT,
subscribes to SUBJECT (wildcards allowed), prints "ready" once nats-server has the
subscription (the PONG to a PING sent after SUB), then one line per message:
"msg SUBJECT PAYLOAD" (payload decoded as UTF-8 with replacement). Runs until killed or
until the connection ends.
"""
import socket
import sys


def main():
    port, subject = int(sys.argv[1]), sys.argv[2]
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.settimeout(None)
    f = s.makefile("rb")
    info = f.readline()
    if not info.startswith(b"INFO "):
        sys.exit("natswatch: no INFO from nats-server: %r" % info)
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"name":"natswatch"}\r\n'
              b"SUB " + subject.encode() + b" 1\r\nPING\r\n")
    while True:
        line = f.readline()
        if not line:
            return
        if line.startswith(b"PING"):
            s.sendall(b"PONG\r\n")
        elif line.startswith(b"PONG"):
            print("ready", flush=True)
        elif line.startswith(b"MSG "):
            parts = line.split()
            n = int(parts[-1])
            payload = f.read(n + 2)[:n]
            print("msg %s %s" % (parts[1].decode(), payload.decode("utf-8", "replace")),
                  flush=True)
        elif line.startswith(b"-ERR"):
            sys.exit("natswatch: " + line.decode().strip())


if __name__ == "__main__":
    main()
