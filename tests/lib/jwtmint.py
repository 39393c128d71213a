#!/usr/bin/python3
"""jwtmint: HS256/384/512 tokens (and deliberately broken ones) for the tests, stdlib only.

Usage: jwtmint.py SECRET_FILE [claim=value ...] [--alg HS256|HS384|HS512|none]
                  [--kid K] [--header JSON] [--raw-payload TEXT] [--flip]
Claims: sub=42, exp=+60 (relative to now) or exp=1700000000, aud=x, iss=y,
channels=a,b (a JSON array), info={"name":"x"} (JSON), any other key=value as a string.
--flip changes one byte of the signature; --alg none gives an unsigned token.
The secret is the file's bytes with trailing CR/LF removed, as lhttpd reads it.
"""
import base64
import hashlib
import hmac
import json
import sys
import time


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    secret = open(argv[1], "rb").read().rstrip(b"\r\n")
    alg, kid, header, raw, flip, claims = "HS256", None, None, None, False, {}
    args = argv[2:]
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--alg", "--kid", "--header", "--raw-payload"):
            v = args[i + 1]
            i += 2
            if a == "--alg":
                alg = v
            elif a == "--kid":
                kid = v
            elif a == "--header":
                header = v
            else:
                raw = v
            continue
        if a == "--flip":
            flip = True
        else:
            k, v = a.split("=", 1)
            if k in ("exp", "nbf", "iat"):
                claims[k] = int(time.time()) + int(v[1:]) if v[:1] in "+-" and len(v) > 1 \
                    else int(v)
            elif k == "channels":
                claims[k] = [c for c in v.split(",") if c]
            elif k == "info":
                claims[k] = json.loads(v)
            else:
                claims[k] = v
        i += 1
    h = {"alg": alg, "typ": "JWT"}
    if kid:
        h["kid"] = kid
    htext = header if header is not None else json.dumps(h, separators=(",", ":"))
    ptext = raw if raw is not None else json.dumps(claims, separators=(",", ":"))
    signing = b64(htext.encode()) + "." + b64(ptext.encode())
    if alg == "none":
        print(signing + ".")
        return 0
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    sig = bytearray(hmac.new(secret, signing.encode(), digest).digest())
    if flip:
        sig[len(sig) // 2] ^= 1
    print(signing + "." + b64(bytes(sig)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
