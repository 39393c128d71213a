#!/usr/bin/python3
"""wsprobe: a raw-socket WebSocket and HTTP probe for lhttpd's integration tests.

It sends exactly the bytes it is told to, good or hostile (the websockets library
refuses to send bad frames), and prints one line per event so that bats can assert
on the output. Usage:

    wsprobe.py [options] PORT STEP...

Options:
    --host H          address to connect to (default 127.0.0.1; loopback only)
    --timeout S       deadline in seconds for each reading step (default 5)
    --split N         write everything in chunks of N bytes, one send() per chunk,
                      with TCP_NODELAY and a short pause between chunks (N=1: byte at a time)
    -H 'Name: value'  extra header for the `upgrade` step (repeatable)
    --protocol P      offer Sec-WebSocket-Protocol P in the `upgrade` step
    --origin O        send Origin O in the `upgrade` step
    --auto-pong       answer every ping read by a step with a pong (same payload)
    --rcvbuf N        set SO_RCVBUF to N bytes once connected (a slow reader; segments
                      larger than it are dropped then, which can stall the connection)
    --tls CAFILE      speak TLS (the server's certificate verified against CAFILE, for
                      the name localhost): every step's bytes go inside TLS records
                      (--split N: one record per chunk)

Data specs (DATA below): `str:TEXT` (or bare TEXT) with escapes \\r \\n \\t \\\\ \\xHH;
`hex:HEX`; `rep:N:TEXT` (TEXT repeated, cut to exactly N bytes); `rand:N` (N pseudo-random
bytes, fixed seed); `utf8:N` (N bytes of valid multi-byte UTF-8 text);
`cat:SPEC ++ SPEC ...` (the concatenation of several specs).

Steps:
    upgrade[:PATH]    WebSocket handshake (default path /); prints `status N`, and on 101
                      `accept ok|bad` and `protocol P|-`; on other statuses the headers
    send:DATA         send raw bytes
    response          read one HTTP response: `status N`, `header name: value` (name in
                      lower case), `body LEN TEXT`
    frame:k=v,...     send one frame; keys: op (text binary cont close ping pong or a
                      number), fin (1), rsv (0..7), mask (1), len (announced payload length,
                      default the real one), data=DATA (must be the last key)
    text:DATA binary:DATA ping:DATA pong:DATA
                      send one masked, final frame of that type
    frags:OP:N:DATA   send DATA as one OP message in N fragments (N >= 1)
    close[:CODE[:REASON]]  send a close frame (no payload when no CODE)
    recv              read one frame and print it: `OP fin=F len=N DATA`
    msg               read one whole message, printing control frames met on the way;
                      prints `text LEN DATA` or `binary LEN HEX`
    echo              like msg, but compares with the last message sent: prints
                      `echo ok OP LEN` or `echo mismatch ...`
    expect-close      read until a close frame; prints `close CODE REASON` (`close none`
                      for an empty payload), the frames before it, `eof` if the TCP
                      connection ends first, `timeout` at the deadline
    eof               wait for the TCP connection to end: `eof`, or `timeout`, or
                      `data N` when bytes arrive instead
    listen:MS         read frames for MS milliseconds, printing them (with --auto-pong,
                      answering pings); prints `still-open` when the time is up, or
                      `close ...`/`eof` when the server ends the connection first
    msgtext           like msg, but prints a binary message as text too
    trickle:MS:DATA   send DATA one byte every MS milliseconds (a slowloris client),
                      stopping when the server closes: `closed-while-sending N/TOTAL`,
                      or `trickle done TOTAL`; what the server sent stays readable
    flood:N:SIZE      send N binary messages of SIZE random bytes without reading:
                      `flood sent N`, or `flood stopped at I/N` after a failed write
    drain[:MS]        read and count whole messages until a close frame (`drained
                      COUNT` then the close line), EOF or the deadline
    fuzz:SEED:N       send N frames with random opcodes, flags, lengths and payloads,
                      mostly well formed, from a fixed seed: `fuzz sent`
    wait:MS           stay silent for MS milliseconds (a slow client)
    rst               reset the connection (SO_LINGER 0, then close): prints `rst`, and
                      ends the run

Every reading step prints `timeout` at its deadline and stops the run; a connection the
server ended prints `eof` (FIN) or `reset` (RST) and stops the run. A failed write prints
`write-failed ERRNAME` (or `write-timeout`) once; later writes are skipped, reads go on.
Exit status: 0, or 2 on a usage error.
"""

import base64
import errno
import hashlib
import os
import random
import select
import socket
import ssl
import struct
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OPS = {"cont": 0, "text": 1, "binary": 2, "close": 8, "ping": 9, "pong": 10}
OPNAMES = {v: k for k, v in OPS.items()}
SHOW = 300  # bytes of payload shown in full before the output is cut


class Eof(Exception):
    """The connection ended: `eof` (FIN) or `reset` (RST) is printed."""


class Timeout(Exception):
    pass


class Usage(Exception):
    pass


def unescape(s):
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n == "x" and i + 3 < len(s) + 0:
                out.append(int(s[i + 2:i + 4], 16))
                i += 4
                continue
            out += {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\"}.get(
                n, ("\\" + n).encode())
            i += 2
            continue
        out += c.encode()
        i += 1
    return bytes(out)


def data_spec(spec):
    """Turns a DATA spec into bytes."""
    if spec.startswith("cat:"):
        return b"".join(data_spec(part) for part in spec[4:].split(" ++ "))
    if spec.startswith("hex:"):
        return bytes.fromhex(spec[4:])
    if spec.startswith("rep:"):
        n, _, text = spec[4:].partition(":")
        unit = unescape(text) or b"a"
        n = int(n)
        return (unit * (n // len(unit) + 1))[:n]
    if spec.startswith("rand:"):
        rng = random.Random(int(spec[5:]))
        return rng.randbytes(int(spec[5:]))
    if spec.startswith("utf8:"):
        n = int(spec[5:])
        unit = "aé€😀".encode()  # 1 + 2 + 3 + 4 bytes
        s = (unit * (n // len(unit) + 1))[:n]
        while True:  # cut back to a character boundary, pad with ASCII
            try:
                s.decode()
                break
            except UnicodeDecodeError:
                s = s[:-1]
        return s + b"a" * (n - len(s))
    if spec.startswith("str:"):
        spec = spec[4:]
    return unescape(spec)


def show(b):
    """Printable form of a payload: escapes like unescape() reads, cut after SHOW bytes."""
    cut = b[:SHOW]
    out = []
    for x in cut:
        if x == 0x5C:
            out.append("\\\\")
        elif x == 0x0D:
            out.append("\\r")
        elif x == 0x0A:
            out.append("\\n")
        elif 0x20 <= x < 0x7F:
            out.append(chr(x))
        else:
            out.append("\\x%02x" % x)
    s = "".join(out)
    if len(b) > SHOW:
        s += "...sha256=" + hashlib.sha256(b).hexdigest()[:16]
    return s


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Probe:
    def __init__(self, opts):
        self.opts = opts
        self.sock = socket.create_connection((opts["host"], opts["port"]), timeout=opts["timeout"])
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if opts["rcvbuf"]:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, opts["rcvbuf"])
        if opts["tls"]:
            ctx = ssl.create_default_context(cafile=opts["tls"])
            self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.eof = False
        self.reset = False
        self.write_failed = False
        self.last_sent = b""
        self.last_op = None
        self.msg_building = None

    # -- writing ----------------------------------------------------------------
    def write(self, data):
        """Writes data (in --split chunks). A failed write prints `write-failed ERRNO` (or
        `write-timeout`) once and makes later writes no-ops, so that the reading steps
        after it can still show what the server sent before it closed."""
        if self.write_failed:
            return True
        split = self.opts["split"] or len(data) or 1
        try:
            for i in range(0, len(data), split):
                self.sock.sendall(data[i:i + split])
                if self.opts["split"] and i + split < len(data):
                    time.sleep(0.0005)
        except socket.timeout:
            self.write_failed = True
            out("write-timeout")
        except OSError as e:
            self.write_failed = True
            out("write-failed %s" % errno.errorcode.get(e.errno, e.errno))
        return True

    def send_frame(self, op, payload, fin=1, rsv=0, mask=1, length=None):
        n = len(payload) if length is None else length
        b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (op & 0x0F)
        m = 0x80 if mask else 0
        if n < 126:
            head = struct.pack("!BB", b0, m | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, m | 126, n)
        else:
            head = struct.pack("!BBQ", b0, m | 127, n)
        plain = payload
        if mask:
            key = os.urandom(4)
            head += key
            payload = mask_fast(payload, key)
        # Track the data message being sent, for the `echo` step.
        if op in (1, 2):
            self.msg_building = (op, bytearray(plain))
        elif op == 0 and self.msg_building is not None:
            self.msg_building[1].extend(plain)
        if op in (0, 1, 2) and fin and self.msg_building is not None:
            self.last_op, self.last_sent = self.msg_building[0], bytes(self.msg_building[1])
            self.msg_building = None
        return self.write(head + payload)

    # -- reading ----------------------------------------------------------------
    def fill(self, need, deadline):
        while len(self.buf) < need:
            if self.eof:
                raise Eof()
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout()
            # Over TLS, bytes already decrypted wait in the SSL object, not the socket.
            pending = self.opts["tls"] and self.sock.pending() > 0
            r, _, _ = select.select([self.sock], [], [], 0 if pending else left)
            if not r and not pending:
                raise Timeout()
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                self.eof = self.reset = True
                raise Eof()
            except ssl.SSLError:
                # The TLS stream ended without close_notify, or broke: the connection's end.
                self.eof = True
                raise Eof()
            if not chunk:
                self.eof = True
                raise Eof()
            self.buf += chunk

    def take(self, n, deadline):
        self.fill(n, deadline)
        b, self.buf = self.buf[:n], self.buf[n:]
        return b

    def read_frame(self, deadline):
        h = self.take(2, deadline)
        fin, rsv, op = h[0] >> 7, (h[0] >> 4) & 7, h[0] & 0x0F
        masked, n = h[1] >> 7, h[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.take(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.take(8, deadline))[0]
        key = self.take(4, deadline) if masked else None
        payload = self.take(n, deadline)
        if key:
            payload = mask_fast(payload, key)
        frame = {"fin": fin, "rsv": rsv, "op": op, "masked": masked, "data": payload}
        if op == 9 and self.opts["auto_pong"]:
            self.send_frame(10, payload)
        return frame

    def read_line(self, deadline):
        while b"\n" not in self.buf:
            self.fill(len(self.buf) + 1, deadline)
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def deadline(self):
        return time.monotonic() + self.opts["timeout"]


def mask_fast(data, key):
    n = len(data)
    k = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ k).to_bytes(n, "big")


def frame_line(f):
    name = OPNAMES.get(f["op"], "op%d" % f["op"])
    extra = ""
    if f["rsv"]:
        extra += " rsv=%d" % f["rsv"]
    if f["masked"]:
        extra += " masked"
    if f["op"] == 8:
        return close_line(f["data"]) + extra
    return ("%s fin=%d len=%d%s %s" % (name, f["fin"], len(f["data"]), extra,
                                       show(f["data"]))).rstrip()


def close_line(p):
    if len(p) == 0:
        return "close none"
    if len(p) == 1:
        return "close short %s" % show(p)
    code = struct.unpack("!H", p[:2])[0]
    return ("close %d %s" % (code, show(p[2:]))).rstrip()


def step_upgrade(pr, path):
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET %s HTTP/1.1" % (path or "/"), "Host: 127.0.0.1:%d" % pr.opts["port"],
             "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " + key,
             "Sec-WebSocket-Version: 13"]
    if pr.opts["protocol"]:
        lines.append("Sec-WebSocket-Protocol: " + pr.opts["protocol"])
    if pr.opts["origin"]:
        lines.append("Origin: " + pr.opts["origin"])
    lines += pr.opts["headers"]
    pr.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    status, headers, _ = read_response(pr, want_body=False)
    out("status %d" % status)
    if status != 101:
        for k, v in headers:
            out("header %s: %s" % (k, v))
        return False
    h = dict(headers)
    want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    out("accept %s" % ("ok" if h.get("sec-websocket-accept") == want else "bad"))
    out("protocol %s" % h.get("sec-websocket-protocol", "-"))
    return True


def read_response(pr, want_body=True):
    d = pr.deadline()
    line = pr.read_line(d).decode("latin-1")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise Usage("not an HTTP status line: %r" % line)
    status = int(parts[1])
    headers = []
    while True:
        h = pr.read_line(d).decode("latin-1")
        if h == "":
            break
        k, _, v = h.partition(":")
        headers.append((k.strip().lower(), v.strip()))
    body = b""
    if want_body:
        n = int(dict(headers).get("content-length", "0"))
        body = pr.take(n, d)
    return status, headers, body


def step_frame(pr, arg):
    keys = {"op": "text", "fin": "1", "rsv": "0", "mask": "1", "len": None}
    data = b""
    rest = arg
    while rest:
        k, _, v = rest.partition("=")
        if k == "data":
            data = data_spec(v)
            break
        v, _, rest = v.partition(",")
        if k not in keys:
            raise Usage("unknown frame key %s" % k)
        keys[k] = v
    op = OPS[keys["op"]] if keys["op"] in OPS else int(keys["op"], 0)
    length = None if keys["len"] is None else int(keys["len"])
    return pr.send_frame(op, data, int(keys["fin"]), int(keys["rsv"]), int(keys["mask"]), length)


def read_message(pr, deadline):
    """Reads frames to the end of a data message; prints control frames met on the way."""
    op = None
    data = bytearray()
    while True:
        f = pr.read_frame(deadline)
        if f["op"] >= 8:
            out(frame_line(f))
            if f["op"] == 8:
                return None, None
            continue
        if op is None:
            if f["op"] == 0:
                out("unexpected " + frame_line(f))
                return None, None
            op = f["op"]
        elif f["op"] != 0:
            out("unexpected " + frame_line(f))
            return None, None
        data += f["data"]
        if f["fin"]:
            return op, bytes(data)


def msg_line(op, data):
    name = OPNAMES.get(op, "op%d" % op)
    if op == 2:
        shown = data[:SHOW // 2].hex() + ("...sha256=" + hashlib.sha256(data).hexdigest()[:16]
                                           if len(data) > SHOW // 2 else "")
        return ("binary %d %s" % (len(data), shown)).rstrip()
    return ("%s %d %s" % (name, len(data), show(data))).rstrip()


def run_step(pr, step):
    """Runs one step; returns False to stop (the connection is unusable)."""
    name, _, arg = step.partition(":")
    if name == "upgrade":
        return step_upgrade(pr, arg)
    if name == "send":
        return pr.write(data_spec(arg))
    if name == "response":
        status, headers, body = read_response(pr)
        out("status %d" % status)
        for k, v in headers:
            out("header %s: %s" % (k, v))
        out(("body %d %s" % (len(body), show(body))).rstrip())
        return True
    if name == "frame":
        return step_frame(pr, arg)
    if name in ("text", "binary", "ping", "pong"):
        return pr.send_frame(OPS[name], data_spec(arg))
    if name == "frags":
        op, n, spec = arg.split(":", 2)
        data, n = data_spec(spec), int(n)
        size = max(1, -(-len(data) // n)) if data else 0
        chunks = [data[i * size:(i + 1) * size] for i in range(n)]
        for i, c in enumerate(chunks):
            if not pr.send_frame(OPS[op] if i == 0 else 0, c, fin=int(i == n - 1)):
                return False
        return True
    if name == "close":
        if arg == "":
            return pr.send_frame(8, b"")
        code, _, reason = arg.partition(":")
        return pr.send_frame(8, struct.pack("!H", int(code)) + data_spec(reason))
    if name == "recv":
        out(frame_line(pr.read_frame(pr.deadline())))
        return True
    if name in ("msg", "echo"):
        op, data = read_message(pr, pr.deadline())
        if op is None:
            return False
        if name == "msg":
            out(msg_line(op, data))
        elif op == pr.last_op and data == pr.last_sent:
            out("echo ok %s %d" % (OPNAMES[op], len(data)))
        else:
            out("echo mismatch got " + msg_line(op, data))
            out("echo mismatch sent " + msg_line(pr.last_op or 0, pr.last_sent))
        return True
    if name == "expect-close":
        d = pr.deadline()
        while True:
            f = pr.read_frame(d)
            out(frame_line(f))
            if f["op"] == 8:
                return True
    if name == "eof":
        d = pr.deadline()
        try:
            pr.fill(len(pr.buf) + 1, d)
            out("data %d %s" % (len(pr.buf), show(pr.buf)))
        except Eof:
            out("reset" if pr.reset else "eof")
        return True
    if name == "listen":
        d = time.monotonic() + int(arg) / 1000.0
        try:
            while True:
                f = pr.read_frame(d)
                out(frame_line(f))
                if f["op"] == 8:
                    return True
        except Timeout:
            out("still-open")
        return True
    if name == "msgtext":
        op, data = read_message(pr, pr.deadline())
        if op is None:
            return False
        out(("%s %d %s" % (OPNAMES[op], len(data), show(data))).rstrip())
        return True
    if name == "trickle":
        ms, _, spec = arg.partition(":")
        data = data_spec(spec)
        for i in range(len(data)):
            pr.write(data[i:i + 1])
            if pr.write_failed:
                break
            end = time.monotonic() + int(ms) / 1000.0
            while time.monotonic() < end and not pr.eof:
                r, _, _ = select.select([pr.sock], [], [], max(0, end - time.monotonic()))
                if r:
                    try:
                        pr.fill(len(pr.buf) + 1, time.monotonic() + 0.1)
                    except (Eof, Timeout):
                        pass
            if pr.eof:
                out("closed-while-sending %d/%d" % (i + 1, len(data)))
                break
        else:
            out("trickle done %d" % len(data))
        return True
    if name == "flood":
        n, _, size = arg.partition(":")
        payload = data_spec("rand:" + size) if not size.startswith(("str:", "rep:", "hex:")) \
            else data_spec(size)
        for i in range(int(n)):
            pr.send_frame(2, payload)
            if pr.write_failed:
                out("flood stopped at %d/%s" % (i + 1, n))
                return True
        out("flood sent %s" % n)
        return True
    if name == "drain":
        d = time.monotonic() + (int(arg) / 1000.0 if arg else pr.opts["timeout"])
        count = 0
        try:
            while True:
                f = pr.read_frame(d)
                if f["op"] == 8:
                    out("drained %d" % count)
                    out(frame_line(f))
                    return True
                if f["fin"] and f["op"] in (0, 1, 2):
                    count += 1
        except Timeout:
            out("drained %d" % count)
            raise
        except Eof:
            out("drained %d" % count)
            raise
    if name == "fuzz":
        seed, _, n = arg.partition(":")
        rng = random.Random(int(seed))
        for _ in range(int(n)):
            op = rng.choice([0, 1, 2, 8, 9, 10, 1, 2, 0, rng.randrange(16)])
            size = rng.choice([0, 1, 2, 5, 125, 126, rng.randrange(300), 65536])
            data = rng.randbytes(size)
            if op == 1 and rng.random() < 0.7:
                data = data_spec("utf8:%d" % size)
            if op == 8 and rng.random() < 0.7:
                data = struct.pack("!H", rng.choice([1000, 1001, 1002, 3000, 999, 0])) + data[:20]
            pr.send_frame(op, data, fin=int(rng.random() < 0.8),
                          rsv=0 if rng.random() < 0.9 else rng.randrange(8),
                          mask=int(rng.random() < 0.95))
            if pr.write_failed:
                break
        out("fuzz sent")
        return True
    if name == "wait":
        time.sleep(int(arg) / 1000.0)
        return True
    if name == "rst":
        pr.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        pr.sock.close()
        out("rst")
        return False
    raise Usage("unknown step %s" % name)


def main(argv):
    opts = {"host": "127.0.0.1", "timeout": 5.0, "split": 0, "headers": [], "protocol": None,
            "origin": None, "auto_pong": False, "rcvbuf": 0, "tls": None}
    args = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--host", "--timeout", "--split", "-H", "--protocol", "--origin", "--rcvbuf",
                 "--tls"):
            if i + 1 >= len(argv):
                raise Usage("%s needs a value" % a)
            v = argv[i + 1]
            i += 2
            if a == "--host":
                opts["host"] = v
            elif a == "--timeout":
                opts["timeout"] = float(v)
            elif a == "--split":
                opts["split"] = int(v)
            elif a == "--rcvbuf":
                opts["rcvbuf"] = int(v)
            elif a == "--tls":
                opts["tls"] = v
            elif a == "-H":
                opts["headers"].append(v)
            elif a == "--protocol":
                opts["protocol"] = v
            else:
                opts["origin"] = v
            continue
        if a == "--auto-pong":
            opts["auto_pong"] = True
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            args.append(a)
        i += 1
    if not args:
        raise Usage("no PORT")
    opts["port"] = int(args[0])
    try:
        pr = Probe(opts)
    except OSError as e:
        out("connect-failed %s" % (e.errno,))
        return 0
    for step in args[1:]:
        try:
            if not run_step(pr, step):
                break
        except Timeout:
            out("timeout")
            break
        except Eof:
            out("reset" if pr.reset else "eof")
            break
    pr.sock.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Usage as e:
        sys.stderr.write("wsprobe: %s\n" % e)
        sys.exit(2)
