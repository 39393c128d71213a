#!/usr/bin/python3
"""connect_probe: opens HTTP connections to 127.0.0.1:PORT one after another, each sending
GET /livez and reading the status line, until the file STOP exists or SECONDS have
passed; then prints `served N failed M` and one `failure KIND COUNT` line per kind of
failure (refused, reset, timeout, no answer). Used by package.bats to show that no
connection is refused or dropped while an upgrade restarts lhttpd.service behind its
socket unit.

Usage: connect_probe.py PORT STOP SECONDS
"""

import os
import socket
import sys
import time


def main():
    port, stop, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    deadline = time.monotonic() + seconds
    served = 0
    failures = {}
    while time.monotonic() < deadline and not os.path.exists(stop):
        kind = None
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"GET /livez HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
                if s.recv(16).startswith(b"HTTP/1.1 "):
                    served += 1
                else:
                    kind = "no-answer"
        except ConnectionRefusedError:
            kind = "refused"
        except ConnectionResetError:
            kind = "reset"
        except socket.timeout:
            kind = "timeout"
        except OSError as e:
            kind = "oserror-%d" % (e.errno or 0)
        if kind:
            failures[kind] = failures.get(kind, 0) + 1
        time.sleep(0.005)
    print("served %d failed %d" % (served, sum(failures.values())), flush=True)
    for kind, n in sorted(failures.items()):
        print("failure %s %d" % (kind, n), flush=True)


if __name__ == "__main__":
    main()
