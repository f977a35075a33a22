"""A client for getty's idle-memory tests, in another language on purpose.

Opens COUNT connections (tcp, tls, unix) or sockets (udp) to the server, and
on each sends one length-prefixed packet of SIZE bytes (4-byte big-endian
length, then the payload) and reads its echo back; SIZE 0 sends nothing on
a stream (a session that never sent anything). Prints "ready" once every
connection is set, then holds them open until its stdin closes.

usage: idle_client.py TRANSPORT ADDR COUNT SIZE [CAFILE]
"""

import socket
import ssl
import struct
import sys


def read_exact(conn, n):
    out = bytearray()
    while len(out) < n:
        chunk = conn.recv(n - len(out))
        if not chunk:
            raise EOFError("server closed before the echo arrived")
        out += chunk
    return bytes(out)


def main():
    transport, addr, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    cafile = sys.argv[5] if len(sys.argv) > 5 else None
    conns = []
    payload = bytes([0x5A]) * size
    frame = struct.pack(">I", size) + payload
    for _ in range(count):
        if transport == "unix":
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(addr)
        elif transport == "udp":
            host, port = addr.rsplit(":", 1)
            conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            conn.connect((host, int(port)))
        else:
            host, port = addr.rsplit(":", 1)
            conn = socket.create_connection((host, int(port)), timeout=10)
            if transport == "tls":
                ctx = ssl.create_default_context(cafile=cafile)
                conn = ctx.wrap_socket(conn, server_hostname="localhost")
        conn.settimeout(10)
        if transport == "udp":
            conn.send(frame)
            echo = conn.recv(65536)
            if echo != frame:
                raise RuntimeError("udp echo differs")
        elif size > 0:
            conn.sendall(frame)
            header = read_exact(conn, 4)
            (n,) = struct.unpack(">I", header)
            if n != size or read_exact(conn, n) != payload:
                raise RuntimeError("echo differs")
        conns.append(conn)
    print("ready", flush=True)
    sys.stdin.read()
    for conn in conns:
        conn.close()


if __name__ == "__main__":
    main()
