#!/usr/bin/env python3
"""Identity for the chat demo (issue 17), with the standard library only.

The demo has no login backend, so its users' tokens are minted here, at start, with a
random secret that lives only in a temporary directory:

  demo-identity.py identity DIR WWW
      writes DIR/demo-jwt.secret (48 random bytes as 64 base64url characters, mode 0600)
      and WWW/demo-tokens.js (the users and their HS256 tokens, for the page), and prints
      the configuration keys that go with them, as one JSON object: "auth" (the key) and
      "namespaces" ("chat": authenticated, "team": token; both subscribers-only publish
      and stamp_user; "chat" keeps each room's last 100 messages in NATS JetStream).

  demo-identity.py config --base FILE --out FILE --www DIR --control-socket PATH
                          [--identity DIR]
      `make run`'s configuration: FILE (JSON with // and /* */ comments, like
      etc/lhttpd.json) with static.root, control_socket and static.max_age_s 0 set, and,
      with --identity, the keys of `identity DIR WWW` merged in.

Users: alice and bob (channels ["team.secret"]: the private room) and carol (none).
Tokens expire after --exp-in seconds (default 7 days).
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import time

KID = "demo"
USERS = [
    {"user": "alice", "channels": ["team.secret"]},
    {"user": "bob", "channels": ["team.secret"]},
    {"user": "carol", "channels": []},
]
ROOMS = {"lobby": "chat.lobby", "private": "team.secret"}
NAMESPACES = {
    # The rooms keep their last 100 messages (issue 18): nats-server needs JetStream (-js).
    "chat": {"subscribe": "authenticated", "publish": "subscribers", "stamp_user": True,
             "history": {"size": 100}, "presence": True},
    "team": {"subscribe": "token", "publish": "subscribers", "stamp_user": True,
             "presence": True, "join_leave": True},
}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(secret, claims):
    """A compact HS256 JWS of claims, signed with secret (bytes)."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


def identity(directory, www, exp_in):
    os.makedirs(directory, exist_ok=True)
    secret_file = os.path.abspath(os.path.join(directory, "demo-jwt.secret"))
    secret = b64url(secrets.token_bytes(48)).encode()  # 64 bytes, no CR/LF
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret + b"\n")
    now = int(time.time())
    users = []
    for u in USERS:
        claims = {"sub": u["user"], "iat": now, "exp": now + exp_in, "info": {"name": u["user"]}}
        if u["channels"]:
            claims["channels"] = u["channels"]
        users.append({"user": u["user"], "channels": u["channels"], "token": mint(secret, claims)})
    demo = {"users": users, "rooms": ROOMS, "expires": now + exp_in}
    with open(os.path.join(www, "demo-tokens.js"), "w") as f:
        f.write("// Demo users for the chat page, minted by tests/lib/demo-identity.py when the\n"
                "// server started (the demo has no login backend). Not for production.\n")
        f.write("export default " + json.dumps(demo, indent=2) + ";\n")
    return {"auth": {"anonymous": True, "keys": [{"kid": KID, "secret_file": secret_file}]},
            "namespaces": NAMESPACES}


def strip_comments(text):
    """JSON with // and /* */ comments -> JSON; comment markers inside strings stay."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                sys.exit("demo-identity: unterminated /* comment")
            i = j + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("identity")
    a.add_argument("dir")
    a.add_argument("www")
    a.add_argument("--exp-in", type=int, default=7 * 86400)
    c = sub.add_parser("config")
    c.add_argument("--base", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--www", required=True)
    c.add_argument("--control-socket", required=True)
    c.add_argument("--identity")
    c.add_argument("--exp-in", type=int, default=7 * 86400)
    args = ap.parse_args()
    if args.cmd == "identity":
        print(json.dumps(identity(args.dir, args.www, args.exp_in)))
        return
    with open(args.base) as f:
        cfg = json.loads(strip_comments(f.read()))
    cfg["control_socket"] = args.control_socket
    cfg.setdefault("static", {})
    cfg["static"]["root"] = args.www
    cfg["static"]["max_age_s"] = 0
    if args.identity:
        cfg.update(identity(args.identity, args.www, args.exp_in))
    with open(args.out, "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
