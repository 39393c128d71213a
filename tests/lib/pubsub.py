#!/usr/bin/python3
"""pubsub: drives several named LHTTP WebSocket connections from one process, in the
order of the steps given, for lhttpd's pub/sub integration tests. One process means a
test decides exactly what happens before what: a client is known to be subscribed
when the pong to a ping sent after its subscribe arrives (the worker handles one
connection's messages in order), and an absent message is proven by a fence: a later
message of the same publisher that arrives first.

Usage: pubsub.py [--timeout S] [--rcvbuf NAME=BYTES]... [-H 'NAME=Header: value']... STEP...

-H adds a header to the handshake of connection NAME (an Authorization header, say).

Steps (fields are separated by ':'; the last field may contain ':'):
    open:NAME:PORT[:PATH]    connect and upgrade (default path /): `NAME open`, or
                             `NAME status N` when refused (the run stops)
    sub:NAME:LIST            send "LHTTP/1.0 subscribe\\r\\nsubscribe:LIST\\r\\n\\r\\n" (LIST
                             verbatim, runs of spaces included), then a barrier; prints
                             `NAME subscribed` (replies before the pong are printed first)
    unsub:NAME:LIST          the same with unsubscribe: `NAME unsubscribed`
    pub:NAME:LIST:BODY       send "LHTTP/1.0 msg\\r\\npublish:LIST\\r\\n\\r\\nBODY"
    send:NAME:DATA           send DATA (a wsprobe.py data spec) as one text message
    sendbin:NAME:DATA        the same in a binary message
    barrier:NAME             send an LHTTP ping and read until its pong; what arrives
                             before it is printed: `NAME barrier`
    recv:NAME                read one message: `NAME got LEN TEXT` (escaped as wsprobe.py
                             shows it), `NAME got-binary LEN TEXT` for a binary one
    burst:NAME:LIST:N[:SIZE[:READER[:WINDOW]]]
                             publish N messages with command "seq" and body "I\\n" padded
                             to SIZE bytes (I = 1..N): `NAME sent N`. With READER, read
                             its copies while sending, never more than WINDOW (default
                             8) ahead of it, and check them as seq does
    seq:NAME:N               read messages until N "seq" messages came, checking that
                             they are 1..N in order: `NAME seq ok N`, or `NAME seq bad
                             ...` (exit status 1)
    sync:PUB:SUB:CHANNEL[:SECONDS]
                             publish "sync" messages from PUB on CHANNEL every 50 ms
                             until SUB receives one (the path through NATS is up):
                             `SUB synced`, or `SUB sync timeout` (exit status 1)
    drain:NAME               read until the server ends the connection: `NAME drained K`
                             (K data messages), then `NAME close CODE REASON`, `NAME eof`
                             or `NAME reset`
    close:NAME               send close 1000 and read until the server's close:
                             `NAME closed CODE`
    quit:NAME                close the TCP connection without a close frame: `NAME quit`
    port:NAME                print the connection's local port: `NAME port N`
    await:FILE[:SECONDS]     wait (default 20 s) until FILE exists: `await ok`
    print:TEXT               print TEXT (a marker for a test polling the output)

Messages with the command "sync" are skipped by every reading step but sync, so late
sync messages never disturb a test. Every reading step has the --timeout deadline
(default 5 s) and prints `NAME timeout` there; the run then stops with exit status 1,
as it does when a connection ends unexpectedly (`NAME eof`, `NAME close CODE ...`).
"""

import os
import select
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsprobe  # noqa: E402  (frames, data specs and the escaped output form)


class Stop(Exception):
    """Ends the run with exit status 1 (the reason is already printed)."""


class Closed(Exception):
    """The server sent a close frame; the argument is its printed form."""


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def command_of(data):
    """The command of an LHTTP message, or None."""
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not first.startswith(b"LHTTP/1.0 "):
        return None
    return first[10:].decode("latin-1")


def body_of(data):
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = data.find(sep)
        if i >= 0:
            return data[i + len(sep):]
    return b""


class Conn:
    def __init__(self, name, port, path, timeout, rcvbuf, headers=()):
        self.name = name
        opts = {"host": "127.0.0.1", "port": port, "timeout": timeout, "split": 0,
                "headers": list(headers), "protocol": None, "origin": None, "auto_pong": True,
                "rcvbuf": rcvbuf, "tls": None}
        self.pr = wsprobe.Probe(opts)
        self.path = path
        self.seq_next = 1
        self.barriers = 0
        self.last_op = 1

    def say(self, text):
        out("%s %s" % (self.name, text))

    def send(self, data, op=1):
        self.pr.send_frame(op, data)
        if self.pr.write_failed:
            self.say("write failed")
            raise Stop()

    def read_frame(self, deadline):
        """wsprobe's read_frame, but a timeout never leaves half a frame consumed: the
        whole frame is buffered before it is parsed."""
        pr = self.pr
        pr.fill(2, deadline)
        n, need = pr.buf[1] & 0x7F, 2
        if n == 126:
            need = 4
        elif n == 127:
            need = 10
        pr.fill(need, deadline)
        if n == 126:
            n = int.from_bytes(pr.buf[2:4], "big")
        elif n == 127:
            n = int.from_bytes(pr.buf[2:10], "big")
        pr.fill(need + (4 if pr.buf[1] & 0x80 else 0) + n, deadline)
        return pr.read_frame(deadline)

    def read_quiet(self, deadline, skip_sync=True):
        """One data message (bytes). Raises wsprobe.Timeout, wsprobe.Eof, or Closed with
        the close line."""
        data = bytearray()
        while True:
            f = self.read_frame(deadline)
            if f["op"] == 8:
                raise Closed(wsprobe.close_line(f["data"]))
            if f["op"] >= 8:
                continue  # pings are answered by the probe (auto_pong)
            if f["op"] != 0:
                self.last_op = f["op"]
            data += f["data"]
            if f["fin"]:
                if skip_sync and command_of(bytes(data)) == "sync":
                    data = bytearray()
                    continue
                return bytes(data)

    def read(self, deadline, skip_sync=True):
        """One data message (bytes), or raises Stop after printing why there is none."""
        try:
            return self.read_quiet(deadline, skip_sync)
        except Closed as e:
            self.say(str(e))
        except wsprobe.Timeout:
            self.say("timeout")
        except wsprobe.Eof:
            self.say("reset" if self.pr.reset else "eof")
        raise Stop()

    def has_input(self):
        if self.pr.buf:
            return True
        r, _, _ = select.select([self.pr.sock], [], [], 0)
        return bool(r)

    def got(self, data):
        kind = "got" if self.last_op == 1 else "got-binary"
        self.say(("%s %d %s" % (kind, len(data), wsprobe.show(data))).rstrip())

    def barrier(self):
        self.barriers += 1
        tag = b"barrier-%d" % self.barriers
        self.send(b"LHTTP/1.0 ping\r\n\r\n" + tag)
        deadline = self.pr.deadline()
        while True:
            m = self.read(deadline)
            if command_of(m) == "pong" and body_of(m) == tag:
                return
            self.got(m)

    def check_seq(self, m):
        """Checks one message against the expected sequence; raises Stop when wrong."""
        if command_of(m) != "seq":
            self.say("seq bad: expected %d, got a message that is not seq:" % self.seq_next)
            self.got(m)
            raise Stop()
        b = body_of(m)
        num = b.split(b"\n", 1)[0]
        if num != str(self.seq_next).encode():
            self.say("seq bad: expected %d, got %s" % (self.seq_next, wsprobe.show(num)))
            raise Stop()
        self.seq_next += 1


def seq_message(chans, i, size):
    head = b"LHTTP/1.0 seq\r\npublish:" + chans.encode() + b"\r\n\r\n"
    body = b"%d\n" % i
    if len(body) < size:
        body += b"p" * (size - len(body))
    return head + body


def run(steps, timeout, rcvbufs, headers=None):
    conns = {}
    sync_n = 0

    def conn(name):
        if name not in conns:
            raise wsprobe.Usage("no connection named %s" % name)
        return conns[name]

    for step in steps:
        kind, _, rest = step.partition(":")
        if kind == "open":
            name, _, rest = rest.partition(":")
            port, _, path = rest.partition(":")
            c = Conn(name, int(port), path or "/", timeout, rcvbufs.get(name, 0),
                     (headers or {}).get(name, ()))
            conns[name] = c
            saved = wsprobe.out
            lines = []
            wsprobe.out = lines.append  # the probe's own upgrade lines are not ours
            try:
                ok = wsprobe.step_upgrade(c.pr, c.path)
            except (wsprobe.Timeout, wsprobe.Eof):
                ok = False
            finally:
                wsprobe.out = saved
            if not ok:
                c.say(lines[0] if lines else "failed")
                raise Stop()
            c.say("open")
        elif kind in ("sub", "unsub"):
            name, _, chans = rest.partition(":")
            c = conn(name)
            key = b"subscribe" if kind == "sub" else b"unsubscribe"
            c.send(b"LHTTP/1.0 " + key + b"\r\n" + key + b":" + chans.encode() + b"\r\n\r\n")
            c.barrier()
            c.say("subscribed" if kind == "sub" else "unsubscribed")
        elif kind == "pub":
            name, _, rest = rest.partition(":")
            chans, _, body = rest.partition(":")
            conn(name).send(b"LHTTP/1.0 msg\r\npublish:" + chans.encode() + b"\r\n\r\n" +
                            wsprobe.unescape(body))
        elif kind in ("send", "sendbin"):
            name, _, spec = rest.partition(":")
            conn(name).send(wsprobe.data_spec(spec), 1 if kind == "send" else 2)
        elif kind == "barrier":
            c = conn(rest)
            c.barrier()
            c.say("barrier")
        elif kind == "recv":
            c = conn(rest)
            c.got(c.read(c.pr.deadline()))
        elif kind == "burst":
            f = rest.split(":")
            c, chans, n = conn(f[0]), f[1], int(f[2])
            size = int(f[3]) if len(f) > 3 and f[3] else 0
            reader = conn(f[4]) if len(f) > 4 and f[4] else None
            window = int(f[5]) if len(f) > 5 else 8
            start = 1
            if reader:
                reader.seq_next = 1
            for i in range(1, n + 1):
                if reader:
                    # Keep the reader close behind, and take what it has anyway.
                    while reader.seq_next - start + window < i or reader.has_input():
                        reader.check_seq(reader.read(reader.pr.deadline()))
                c.send(seq_message(chans, i, size))
            c.say("sent %d" % n)
            if reader:
                while reader.seq_next - start < n:
                    reader.check_seq(reader.read(reader.pr.deadline()))
                reader.say("seq ok %d" % n)
        elif kind == "seq":
            name, _, n = rest.partition(":")
            c = conn(name)
            c.seq_next = start = 1
            while c.seq_next - start < int(n):
                c.check_seq(c.read(c.pr.deadline()))
            c.say("seq ok %s" % n)
        elif kind == "sync":
            f = rest.split(":")
            p, s, chan = conn(f[0]), conn(f[1]), f[2]
            deadline = time.monotonic() + (float(f[3]) if len(f) > 3 else 10.0)
            done = False
            while not done:
                if time.monotonic() >= deadline:
                    s.say("sync timeout")
                    raise Stop()
                sync_n += 1
                p.send(b"LHTTP/1.0 sync\r\npublish:%s\r\n\r\n%d" % (chan.encode(), sync_n))
                wait_until = min(deadline, time.monotonic() + 0.05)
                while True:
                    try:
                        m = s.read_quiet(wait_until, skip_sync=False)
                    except wsprobe.Timeout:
                        break  # only the 50 ms wait ran out: publish again
                    except (Closed, wsprobe.Eof):
                        s.say("ended while syncing")
                        raise Stop()
                    if command_of(m) == "sync":
                        done = True
                        break
                    s.got(m)
            s.say("synced")
        elif kind == "drain":
            c = conn(rest)
            count = 0
            deadline = c.pr.deadline()
            try:
                while True:
                    f = c.read_frame(deadline)
                    if f["op"] == 8:
                        c.say("drained %d" % count)
                        c.say(wsprobe.close_line(f["data"]))
                        break
                    if f["op"] < 8 and f["fin"]:
                        count += 1
            except wsprobe.Timeout:
                c.say("drained %d" % count)
                c.say("timeout")
                raise Stop()
            except wsprobe.Eof:
                c.say("drained %d" % count)
                c.say("reset" if c.pr.reset else "eof")
        elif kind == "close":
            c = conn(rest)
            c.pr.send_frame(8, b"\x03\xe8")
            deadline = c.pr.deadline()
            try:
                while True:
                    f = c.read_frame(deadline)
                    if f["op"] == 8:
                        c.say("closed " + wsprobe.close_line(f["data"])[6:])
                        break
            except (wsprobe.Timeout, wsprobe.Eof):
                c.say("closed without a close frame")
            c.pr.sock.close()
            del conns[rest]
        elif kind == "quit":
            c = conn(rest)
            c.pr.sock.close()
            del conns[rest]
            c.say("quit")
        elif kind == "await":
            path, _, secs = rest.rpartition(":")
            if not path or not secs.replace(".", "", 1).isdigit():
                path, secs = rest, "20"
            deadline = time.monotonic() + float(secs)
            while not os.path.exists(path):
                if time.monotonic() >= deadline:
                    out("await timeout")
                    raise Stop()
                time.sleep(0.02)
            out("await ok")
        elif kind == "port":
            c = conn(rest)
            c.say("port %d" % c.pr.sock.getsockname()[1])
        elif kind == "print":
            out(rest)
        else:
            raise wsprobe.Usage("unknown step %s" % kind)


def main(argv):
    timeout = 5.0
    rcvbufs = {}
    headers = {}
    steps = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--timeout", "--rcvbuf", "-H") and i + 1 < len(argv):
            if a == "--timeout":
                timeout = float(argv[i + 1])
            elif a == "-H":
                name, _, h = argv[i + 1].partition("=")
                headers.setdefault(name, []).append(h)
            else:
                name, _, n = argv[i + 1].partition("=")
                rcvbufs[name] = int(n)
            i += 2
            continue
        if a in ("-h", "--help"):
            print(__doc__)
            return 0
        steps.append(a)
        i += 1
    if not steps:
        raise wsprobe.Usage("no steps")
    try:
        run(steps, timeout, rcvbufs, headers)
    except Stop:
        return 1
    except (ConnectionRefusedError, socket.timeout) as e:
        out("connect-failed %s" % e)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except wsprobe.Usage as e:
        sys.stderr.write("pubsub: %s\n" % e)
        sys.exit(2)
