#!/usr/bin/python3
"""notify_listen: a stand-in for systemd's notification socket, for lhttpd's integration
tests. Binds a unix datagram socket at PATH (what NOTIFY_SOCKET points to), asks the
kernel for each sender's credentials (SO_PASSCRED), and prints one line per datagram:

    pid=PID mono=USEC FIELD | FIELD | ...

PID is the sending process as the kernel reports it (SCM_CREDENTIALS), so a test can
check that only the master notifies; USEC is this host's CLOCK_MONOTONIC in microseconds
when the datagram was read, to compare with MONOTONIC_USEC=; the fields are the lines
of the message ("READY=1", "STATUS=..."). Output is flushed after every line.

Usage: notify_listen.py PATH
Runs until SIGTERM or SIGINT; removes PATH on exit. Exit status 2 on bad usage.
"""

import os
import signal
import socket
import struct
import sys
import time

UCRED = struct.Struct("iII")  # pid_t pid; uid_t uid; gid_t gid


def main(argv):
    if len(argv) != 1:
        sys.stderr.write(__doc__)
        return 2
    path = argv[0]
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    s.bind(path)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            data, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(UCRED.size))
            pid = 0
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = UCRED.unpack(payload[:UCRED.size])[0]
            mono = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            fields = data.decode("utf-8", "replace").strip("\n").split("\n")
            sys.stdout.write("pid=%d mono=%d %s\n" % (pid, mono, " | ".join(fields)))
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
