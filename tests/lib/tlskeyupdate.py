#!/usr/bin/python3
"""tlskeyupdate: a TLS 1.3 client that makes the server write without ever reading what
it writes (tls.bats). Python's ssl module cannot send a KeyUpdate, so this drives libssl
through ctypes: a handshake and a WebSocket upgrade on the socket, then the writes go
into a memory BIO, where KeyUpdate(update_requested) messages are made in batches and
sent with one sendall each. Every one of them obliges the server to answer with its own
KeyUpdate; the client never reads, so the server's answers pile up somewhere: in the
kernel's buffers, then (unless the server stops reading) in the server's memory.

Usage: tlskeyupdate.py PORT PATH MBYTES [STALL_S]
Sends MBYTES MiB of KeyUpdate records (about 27 bytes each) or until the server has not
taken a byte for STALL_S seconds (default 2). Prints `upgraded`, then `sent N stalled`
or `sent N all`, then waits for a line on stdin (so that the caller can measure while the
connection is open) and exits.
"""

import ctypes
import socket
import sys

ssl = ctypes.CDLL("libssl.so.3")
ssl.TLS_client_method.restype = ctypes.c_void_p
ssl.SSL_CTX_new.restype = ctypes.c_void_p
ssl.SSL_CTX_new.argtypes = [ctypes.c_void_p]
ssl.SSL_new.restype = ctypes.c_void_p
ssl.SSL_new.argtypes = [ctypes.c_void_p]
ssl.SSL_set_fd.argtypes = [ctypes.c_void_p, ctypes.c_int]
ssl.SSL_connect.argtypes = [ctypes.c_void_p]
ssl.SSL_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
ssl.SSL_read.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
ssl.SSL_key_update.argtypes = [ctypes.c_void_p, ctypes.c_int]
ssl.SSL_do_handshake.argtypes = [ctypes.c_void_p]
ssl.SSL_ctrl.restype = ctypes.c_long
ssl.SSL_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
ssl.SSL_CTX_ctrl.restype = ctypes.c_long
ssl.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
ssl.SSL_set0_wbio.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
ssl.BIO_s_mem.restype = ctypes.c_void_p
ssl.BIO_new.restype = ctypes.c_void_p
ssl.BIO_new.argtypes = [ctypes.c_void_p]
ssl.BIO_read.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]

SSL_CTRL_SET_MIN_PROTO_VERSION = 123
SSL_CTRL_SET_TLSEXT_HOSTNAME = 55
SSL_KEY_UPDATE_REQUESTED = 1


def main():
    port, path, mbytes = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    stall = float(sys.argv[4]) if len(sys.argv) > 4 else 2.0
    ctx = ssl.SSL_CTX_new(ssl.TLS_client_method())
    ssl.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, 0x0304, None)
    s = socket.socket()
    # A small receive buffer: the server's answers stop in its own buffers early.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    h = ssl.SSL_new(ctx)
    ssl.SSL_set_fd(h, s.fileno())
    ssl.SSL_ctrl(h, SSL_CTRL_SET_TLSEXT_HOSTNAME, 0, b"localhost")
    if ssl.SSL_connect(h) != 1:
        sys.exit("handshake failed")
    req = ("GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
           % path).encode()
    ssl.SSL_write(h, req, len(req))
    buf = ctypes.create_string_buffer(65536)
    got = b""
    while b"\r\n\r\n" not in got:
        n = ssl.SSL_read(h, buf, len(buf))
        if n <= 0:
            sys.exit("no upgrade answer")
        got += buf.raw[:n]
    if b" 101 " not in got.split(b"\r\n", 1)[0]:
        sys.exit("upgrade refused: %r" % got[:80])
    print("upgraded", flush=True)
    mem = ssl.BIO_new(ssl.BIO_s_mem())
    ssl.SSL_set0_wbio(h, mem)
    s.settimeout(stall)
    total, goal, state = 0, int(mbytes * 1048576), "all"
    while total < goal:
        for _ in range(2000):
            ssl.SSL_key_update(h, SSL_KEY_UPDATE_REQUESTED)
            ssl.SSL_do_handshake(h)
        chunk = b""
        while True:
            n = ssl.BIO_read(mem, buf, len(buf))
            if n <= 0:
                break
            chunk += buf.raw[:n]
        try:
            s.sendall(chunk)
        except socket.timeout:
            state = "stalled"
            break
        except OSError:
            state = "closed"
            break
        total += len(chunk)
    print("sent %d %s" % (total, state), flush=True)
    sys.stdin.readline()


main()
