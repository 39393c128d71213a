#!/usr/bin/python3
"""jwtmint: JWS tokens (and deliberately broken ones) for the tests, stdlib only.

Usage: jwtmint.py KEY_FILE [claim=value ...] [--alg HS256|HS384|HS512|RS256|ES256|none]
                  [--kid K] [--header JSON] [--raw-payload TEXT] [--payload-b64 TEXT] [--flip]
       jwtmint.py --jwks KID=PUBLIC_PEM ...
Claims: sub=42, exp=+60 or exp=-60 (relative to now) or exp=1700000000 (the same for nbf
and iat), aud=x, iss=y, channels=a,b (a JSON array), info={"name":"x"} (JSON), any other
key=value as a string. --flip changes one byte of the signature; --alg none gives an
unsigned token. --raw-payload is the payload's JSON text as given; --payload-b64 is the
payload part itself, not even base64url-encoded by the tool (signed as it is).
For HS*, KEY_FILE is the secret: the file's bytes with trailing CR/LF removed, as lhttpd
reads it. For RS256 and ES256 it is a PEM private key, signed with the openssl command
(`openssl dgst -sha256 -sign`); ES256's DER signature becomes the raw r||s of RFC 7518.
--jwks prints a JWKS document ({"keys": [...]}) with the public keys of the PEM files
(RSA or EC P-256), each with its kid, read through the openssl command.
"""
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def openssl(*args, data=None):
    return subprocess.run(["openssl"] + list(args), input=data, stdout=subprocess.PIPE,
                          check=True).stdout


def der_len(b, i):
    """Reads a DER length at b[i]: (length, index after it)."""
    n = b[i]
    if n < 0x80:
        return n, i + 1
    k = n & 0x7F
    return int.from_bytes(b[i + 1:i + 1 + k], "big"), i + 1 + k


def ecdsa_raw(der):
    """A DER ECDSA-Sig-Value (SEQUENCE of two INTEGERs) as the 64 bytes r||s."""
    assert der[0] == 0x30
    _, i = der_len(der, 1)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n, i = der_len(der, i + 1)
        out += der[i:i + n].lstrip(b"\0").rjust(32, b"\0")
        i += n
    return out


def jwk(kid, pem):
    """The JWK of a public key in a PEM file (RSA, or EC P-256)."""
    text = openssl("pkey", "-pubin", "-in", pem, "-noout", "-text").decode()
    if "Modulus" in text:
        mod = openssl("rsa", "-pubin", "-in", pem, "-noout", "-modulus").decode()
        n = bytes.fromhex(mod.strip().split("=", 1)[1])
        e = 65537
        for line in text.splitlines():
            if line.startswith("Exponent"):
                e = int(line.split()[1])
        eb = e.to_bytes((e.bit_length() + 7) // 8, "big")
        return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(n), "e": b64(eb)}
    der = openssl("pkey", "-pubin", "-in", pem, "-outform", "DER")
    point = der[-65:]  # the uncompressed point 04 || x || y ends the SubjectPublicKeyInfo
    assert point[0] == 4
    return {"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
            "x": b64(point[1:33]), "y": b64(point[33:])}


def main(argv):
    if len(argv) >= 2 and argv[1] == "--jwks":
        keys = [jwk(*a.split("=", 1)) for a in argv[2:]]
        print(json.dumps({"keys": keys}))
        return 0
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    keyfile = argv[1]
    alg, kid, header, raw, flip, claims = "HS256", None, None, None, False, {}
    part = None
    args = argv[2:]
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--alg", "--kid", "--header", "--raw-payload", "--payload-b64"):
            v = args[i + 1]
            i += 2
            if a == "--alg":
                alg = v
            elif a == "--kid":
                kid = v
            elif a == "--header":
                header = v
            elif a == "--payload-b64":
                part = v
            else:
                raw = v
            continue
        if a == "--flip":
            flip = True
        else:
            k, v = a.split("=", 1)
            if k in ("exp", "nbf", "iat"):
                claims[k] = int(time.time()) + int(v) if v[:1] in "+-" and len(v) > 1 \
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
    signing = b64(htext.encode()) + "." + (part if part is not None else b64(ptext.encode()))
    if alg == "none":
        print(signing + ".")
        return 0
    if alg in ("RS256", "ES256"):
        der = openssl("dgst", "-sha256", "-sign", keyfile, data=signing.encode())
        sig = bytearray(der if alg == "RS256" else ecdsa_raw(der))
    else:
        secret = open(keyfile, "rb").read().rstrip(b"\r\n")
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384,
                  "HS512": hashlib.sha512}[alg]
        sig = bytearray(hmac.new(secret, signing.encode(), digest).digest())
    if flip:
        sig[len(sig) // 2] ^= 1
    print(signing + "." + b64(bytes(sig)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
