#!/usr/bin/python3
"""backend: a real HTTP/1.1 server for lhttpd's upstream and webhook tests. It listens on
127.0.0.1, records every TCP connection and every request it receives in a log file (JSON
lines) and answers as its routes file says. A second mode reads that log for bats.

Serve:
    backend.py serve --port-file FILE --log FILE --routes FILE [--port N]

    Binds 127.0.0.1:N (default: a port the kernel picks), then writes the port to
    --port-file (atomically: the file appears complete or not at all). The routes file is
    read again for every request, so a test may rewrite it while the server runs.

    Log lines, appended and flushed as they happen:
        {"event": "connection", "peer": "127.0.0.1:P", "t": SECONDS}
        {"event": "closed", "peer": "127.0.0.1:P", "t": SECONDS}   (that connection ended)
        {"event": "request", "method": M, "path": P, "headers": [[NAME, VALUE], ...],
         "body": TEXT (bytes as latin-1), "peer": ..., "t": SECONDS}
    A request is logged as soon as its body is read, before any delay, so a test can wait
    for "the backend has it" while the answer is still pending; just before the answer is
    written, {"event": "answering", "path": P} is logged, and once it is written, the
    same entry as the request's again with "event": "answered" and its "status".

Routes file: a JSON object from a path to an answer. A key ending in "*" matches every
path starting with the rest; the exact path wins, then the longest prefix. The query
string is not part of the path that is matched. An answer:
    status     (200)    HTTP status
    headers    ({})     header name -> value; "@SELF@" in a value becomes
                        http://127.0.0.1:<this server's port>
    body       ("")     body text (UTF-8)
    body_bytes          a body of that many "x" instead
    echo       (false)  the body is the request's body
    delay_ms   (0)      wait this long before answering
    hang       (false)  never answer: hold the request until the client goes away
    sequence            a list of answers: the Nth request to this route gets the Nth,
                        the last one is repeated
    cases               a list of answers with "header" and "contains": the first whose
                        header (case-insensitive name) contains that text is used;
                        otherwise the route's own fields
A path without a route gets 404.

Read the log:
    backend.py count LOG [--path P] [--prefix P] [--method M] [--header NAME:VALUE]
                         [--event connection]
        prints how many entries match (requests unless --event connection); --header
        wants a request header NAME (any case) with exactly VALUE
    backend.py show LOG [--path P] [--prefix P] [--method M] [--header NAME:VALUE]
                        [--index I]
        prints the Ith matching request (default 0; -1 is the last) as lines:
            method M / path P / header NAME: VALUE (name in lower case, in order) /
            body LEN TEXT (escaped like wsprobe.py's show())
        or `none` when there is no such request.
    backend.py open LOG
        prints how many connections are open now (connections minus closed)
    backend.py peak LOG
        prints the most connections that were open at once (a connection the client
        closed may be logged as closed a little late: this can count one too many)
    backend.py busy LOG
        prints the most requests that were waiting for their answer at once (from
        "request" to "answering": the client cannot have the answer before the latter)
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsprobe import show  # noqa: E402  (the shared escaped form)

LOCK = threading.Lock()
COUNTS = {}  # route key -> requests seen, for "sequence"
T0 = time.monotonic()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # bursts of webhooks: no SYN dropped at a backlog of 5

    def __init__(self, addr, log_path, routes_path):
        self.log_path = log_path
        self.routes_path = routes_path
        self.log_file = open(log_path, "a", encoding="utf-8")
        super().__init__(addr, Handler)

    def record(self, entry):
        entry["t"] = round(time.monotonic() - T0, 4)
        with LOCK:
            self.log_file.write(json.dumps(entry) + "\n")
            self.log_file.flush()

    def process_request(self, request, client_address):
        # Every accepted connection is logged, even one that never sends a request: a
        # canary must show that nobody reached it at all.
        self.record({"event": "connection", "peer": "%s:%d" % client_address[:2]})
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        try:
            peer = "%s:%d" % request.getpeername()[:2]
        except OSError:
            peer = "?"
        super().shutdown_request(request)
        self.record({"event": "closed", "peer": peer})

    def handle_error(self, request, client_address):
        pass  # a client that went away (lhttpd timed out) is expected


def pick_route(routes, path):
    if path in routes:
        return path, routes[path]
    best = None
    for key in routes:
        if key.endswith("*") and path.startswith(key[:-1]):
            if best is None or len(key) > len(best):
                best = key
    return (best, routes[best]) if best is not None else (None, None)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lhttpd-test-backend"

    def log_message(self, fmt, *args):
        pass

    def read_body(self):
        n = self.headers.get("Content-Length")
        if n is not None:
            return self.rfile.read(int(n))
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return b""

    def answer(self):
        body = self.read_body()
        path = self.path.split("?", 1)[0]
        entry = {
            "event": "request", "method": self.command, "path": path, "target": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"), "peer": "%s:%d" % self.client_address[:2]}
        self.server.record(entry)
        try:
            with open(self.server.routes_path, encoding="utf-8") as f:
                routes = json.load(f)
        except (OSError, ValueError):
            routes = {}
        key, spec = pick_route(routes, path)
        if spec is None:
            spec = {"status": 404, "body": "no route\n"}
        with LOCK:
            n = COUNTS.get(key, 0)
            COUNTS[key] = n + 1
        if "sequence" in spec:
            seq = spec["sequence"]
            spec = seq[min(n, len(seq) - 1)]
        for case in spec.get("cases", []):
            if case.get("contains", "") in self.headers.get(case.get("header", ""), "\0"):
                spec = case
                break
        if spec.get("hang"):
            # Never answers: waits for the client's EOF (or reset), then drops it.
            self.close_connection = True
            try:
                while self.connection.recv(4096):
                    pass
            except OSError:
                pass
            return
        if spec.get("delay_ms"):
            time.sleep(spec["delay_ms"] / 1000.0)
        if spec.get("echo"):
            out = body
        elif "body_bytes" in spec:
            out = b"x" * int(spec["body_bytes"])
        else:
            out = spec.get("body", "").encode()
        status = int(spec.get("status", 200))
        self.server.record({"event": "answering", "path": path})
        self.send_response(status)
        self_url = "http://127.0.0.1:%d" % self.server.server_address[1]
        for name, value in spec.get("headers", {}).items():
            self.send_header(name, str(value).replace("@SELF@", self_url))
        if self.command == "HEAD" or status in (204, 304):
            out = b""
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if out:
            self.wfile.write(out)
        self.wfile.flush()
        entry.update(event="answered", status=status)
        self.server.record(entry)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = answer


def serve(args):
    opts = {"--port": "0"}
    i = 0
    while i < len(args):
        opts[args[i]] = args[i + 1]
        i += 2
    srv = Server(("127.0.0.1", int(opts["--port"])), opts["--log"], opts["--routes"])
    tmp = opts["--port-file"] + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, opts["--port-file"])
    try:
        srv.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    return 0


def entries(log, args):
    opts = {}
    i = 0
    while i < len(args):
        opts[args[i]] = args[i + 1]
        i += 2
    event = opts.get("--event", "request")
    out = []
    try:
        with open(log, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue  # a line being written
        if e.get("event") != event:
            continue
        if "--path" in opts and e.get("path") != opts["--path"]:
            continue
        if "--prefix" in opts and not e.get("path", "").startswith(opts["--prefix"]):
            continue
        if "--method" in opts and e.get("method") != opts["--method"]:
            continue
        if "--header" in opts:
            name, _, value = opts["--header"].partition(":")
            if [name.lower(), value] not in [[k.lower(), v] for k, v in e.get("headers", [])]:
                continue
        out.append(e)
    return out, opts


def main(argv):
    if len(argv) >= 1 and argv[0] == "serve":
        return serve(argv[1:])
    if len(argv) >= 2 and argv[0] == "count":
        found, _ = entries(argv[1], argv[2:])
        print(len(found))
        return 0
    if len(argv) >= 2 and argv[0] in ("open", "peak", "busy"):
        n = peak = 0
        try:
            with open(argv[1], encoding="utf-8") as f:
                lines = f.readlines()
        except OSError:
            lines = []
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            ev = e.get("event")
            if ev == ("request" if argv[0] == "busy" else "connection"):
                n += 1
                peak = max(peak, n)
            elif ev == ("answering" if argv[0] == "busy" else "closed"):
                n -= 1
        print(n if argv[0] == "open" else peak)
        return 0
    if len(argv) >= 2 and argv[0] == "show":
        found, opts = entries(argv[1], argv[2:])
        idx = int(opts.get("--index", "0"))
        if not -len(found) <= idx < len(found):
            print("none")
            return 0
        e = found[idx]
        print("method %s" % e["method"])
        print("path %s" % e["path"])
        print("target %s" % e["target"])
        print("peer %s" % e["peer"])
        for k, v in e["headers"]:
            print("header %s: %s" % (k.lower(), v))
        b = e["body"].encode("latin-1")
        print(("body %d %s" % (len(b), show(b))).rstrip())
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
