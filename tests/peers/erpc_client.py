"""An independent erpc v6 raw-protocol client, written from the wire spec
(/work/shared/erpc/SPEC.md, "Part 1 - Wire spec" and "Part 2 - Golden
vectors") alone, in another language on purpose: it shares no code with the
Rust peer it checks.

It connects to an rpc_server (routes /home/echo, /home/fail, /home/push_me,
/heartbeat; transfer filters gzip as 'g' and md5 as 'm') and checks, byte for
byte where the spec gives the bytes:

- echoes of json, plain and protobuf bodies, and replies of the SPEC's shape
  (REPLY, same seq, empty service method, status "code=0", no meta, the
  call's codec, the call's body);
- two pipelined calls, their replies accepted in any order;
- /home/fail's status text, /home/push_me's PUSH and REPLY in either order,
  an unknown method's 404;
- golden frames sent verbatim and the replies the spec lists for them;
- a gzip call ([g]) and an md5+gzip call ([m, g]): the replies come back
  through the same filters;
- the heartbeat CALL and PUSH;
- hostile frames (size 3, mtype 9) on fresh connections: the server closes
  the connection, and a new connection is still served.

Prints "ok" and exits 0 only if every check passes; otherwise prints each
failure and exits 1.

usage: erpc_client.py PORT [HOST]
"""

import gzip
import hashlib
import json
import socket
import struct
import sys

CALL, REPLY, PUSH = 1, 2, 3
JSON, PLAIN, PROTOBUF = ord("j"), ord("s"), ord("p")
TIMEOUT = 5.0
GOLDEN = "/work/shared/erpc/golden/"

# --- escaping (SPEC 1.4, shared by status and meta) ------------------------

SAFE = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-._")


def escape(text):
    out = []
    for b in text.encode("utf-8"):
        out.append(chr(b) if b in SAFE else "%%%02X" % b)
    return "".join(out)


def unescape(text):
    raw = text.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == ord("%") and _is_hex(raw[i + 1 : i + 3]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        elif c == ord("+"):
            out.append(ord(" "))
            i += 1
        else:
            out.append(c)
            i += 1
    return out.decode("utf-8", "replace")


def _is_hex(two):
    return len(two) == 2 and all(chr(b) in "0123456789abcdefABCDEF" for b in two)


def encode_meta(pairs):
    parts = []
    for key, value in pairs:
        parts.append(escape(key) + ("=" + escape(value) if value else ""))
    return "&".join(parts)


def parse_status(text):
    """code, msg, cause: the first occurrence of each; a bad code is 0."""
    found = {}
    for pair in text.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        key = unescape(key)
        if key in ("code", "msg", "cause") and key not in found:
            found[key] = unescape(value)
    try:
        code = int(found.get("code", "0"))
    except ValueError:
        code = 0
    return code, found.get("msg", ""), found.get("cause")


# --- seq: signed base-36 text (SPEC 1.1 field 5) ---------------------------

DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def seq_text(seq):
    if seq == 0:
        return "0"
    sign, n = ("-", -seq) if seq < 0 else ("", seq)
    out = ""
    while n:
        n, d = divmod(n, 36)
        out = DIGITS[d] + out
    return sign + out


def seq_value(text):
    return int(text, 36)


# --- transfer filters (SPEC 1.7) -------------------------------------------


def gzip_pack(payload):
    if not payload:
        return payload
    return gzip.compress(payload, compresslevel=5, mtime=0)


def gzip_unpack(payload):
    if not payload:
        return payload
    return gzip.decompress(payload)


def md5_pack(payload):
    return payload + hashlib.md5(payload).digest()


def md5_unpack(payload):
    if len(payload) < 16 or hashlib.md5(payload[:-16]).digest() != payload[-16:]:
        raise ValueError("md5 check failed")
    return payload[:-16]


FILTERS = {ord("g"): (gzip_pack, gzip_unpack), ord("m"): (md5_pack, md5_unpack)}


# --- frames (SPEC 1.1) -----------------------------------------------------


def pack(seq, mtype, method, status="code=0", meta="", codec=JSON, body=b"", xfer=b""):
    seq_b = seq_text(seq).encode()
    method_b = method.encode("utf-8")
    status_b = status.encode()
    meta_b = meta.encode()
    payload = (
        bytes([len(seq_b)])
        + seq_b
        + bytes([mtype, len(method_b)])
        + method_b
        + struct.pack(">H", len(status_b))
        + status_b
        + struct.pack(">H", len(meta_b))
        + meta_b
        + bytes([codec])
        + body
    )
    for fid in reversed(xfer):  # the last id is applied first
        payload = FILTERS[fid][0](payload)
    return struct.pack(">I", 4 + 1 + len(xfer) + len(payload)) + bytes([len(xfer)]) + bytes(xfer) + payload


class Frame:
    def __init__(self, xfer, seq, mtype, method, status, meta, codec, body):
        self.xfer, self.seq, self.mtype, self.method = xfer, seq, mtype, method
        self.status, self.meta, self.codec, self.body = status, meta, codec, body

    def __repr__(self):
        return "Frame(xfer=%r seq=%d mtype=%d method=%r status=%r meta=%r codec=%d body=%r)" % (
            self.xfer, self.seq, self.mtype, self.method, self.status, self.meta, self.codec, self.body)


def unpack(frame):
    (size,) = struct.unpack(">I", frame[:4])
    if size != len(frame):
        raise ValueError("size field %d, frame %d bytes" % (size, len(frame)))
    n = frame[4]
    xfer = frame[5 : 5 + n]
    payload = frame[5 + n :]
    for fid in xfer:  # the first id is undone first
        payload = FILTERS[fid][1](payload)
    p = 0

    def take(k):
        nonlocal p
        if p + k > len(payload):
            raise ValueError("truncated payload")
        out = payload[p : p + k]
        p += k
        return out

    seq = seq_value(take(take(1)[0]).decode())
    mtype = take(1)[0]
    method = take(take(1)[0]).decode("utf-8")
    status = take(struct.unpack(">H", take(2))[0]).decode()
    meta = take(struct.unpack(">H", take(2))[0]).decode()
    codec = take(1)[0]
    body = payload[p:]
    return Frame(bytes(xfer), seq, mtype, method, status, meta, codec, body)


class Conn:
    def __init__(self, port, host):
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.sock.settimeout(TIMEOUT)

    def send(self, data):
        self.sock.sendall(data)

    def read_exact(self, n):
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError("the server closed the connection")
            out += chunk
        return bytes(out)

    def read_raw(self):
        head = self.read_exact(4)
        (size,) = struct.unpack(">I", head)
        return head + self.read_exact(size - 4)

    def read(self):
        return unpack(self.read_raw())

    def closed_by_server(self):
        """True if the server closes the connection within TIMEOUT."""
        try:
            while True:
                chunk = self.sock.recv(4096)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def golden(name):
    with open(GOLDEN + name + ".hex") as f:
        return bytes.fromhex(f.read().strip())


def ok_reply(seq, codec, body):
    """The REPLY the spec shows for a successful echo (Part 2)."""
    return pack(seq, REPLY, "", "code=0", "", codec, body)


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


# --- the checks ------------------------------------------------------------


def check_echoes(c):
    for seq, codec, body in [
        (1, JSON, b'{"a":1}'),
        (2, PLAIN, b"hello"),
        (3, PROTOBUF, bytes.fromhex("08011002")),
    ]:
        c.send(pack(seq, CALL, "/home/echo", codec=codec, body=body))
        got = c.read_raw()
        want = ok_reply(seq, codec, body)
        expect(got == want, "echo codec %s: got %s, want %s" % (chr(codec), got.hex(), want.hex()))
    # The json reply for seq 1 is golden b_reply_echo_ok exactly.
    c.send(pack(1, CALL, "/home/echo", codec=JSON, body=b'{"a":1}'))
    got = c.read_raw()
    expect(got == golden("b_reply_echo_ok"), "json echo is not golden b: %s" % got.hex())


def check_pipelined(c):
    a = pack(10, CALL, "/home/echo", codec=PLAIN, body=b"first")
    b = pack(11, CALL, "/home/echo", codec=PLAIN, body=b"second")
    c.send(a + b)
    got = {}
    for _ in range(2):
        f = c.read()
        expect(f.mtype == REPLY and f.seq not in got, "pipelined: unexpected %r" % f)
        got[f.seq] = f.body
    expect(got == {10: b"first", 11: b"second"}, "pipelined: replies %r" % got)


def check_fail(c):
    c.send(pack(20, CALL, "/home/fail"))
    f = c.read()
    expect(f.mtype == REPLY and f.seq == 20 and f.method == "", "fail: %r" % f)
    expect(f.status.startswith("code=1234&msg=home%20fail"), "fail: status %r" % f.status)
    code, msg, _ = parse_status(f.status)
    expect((code, msg) == (1234, "home fail"), "fail: parsed %r" % ((code, msg),))
    expect(f.codec == 0 and f.body == b"", "fail: an error REPLY has codec 0, no body: %r" % f)


def check_push_me(c):
    c.send(pack(30, CALL, "/home/push_me"))
    push = reply = None
    for _ in range(2):
        f = c.read()
        if f.mtype == PUSH and push is None:
            push = f
        elif f.mtype == REPLY and reply is None:
            reply = f
        else:
            raise AssertionError("push_me: unexpected %r" % f)
    expect(push.method == "/push/hello" and push.codec == JSON, "push_me: push %r" % push)
    expect(json.loads(push.body) == {"hello": "world"}, "push_me: push body %r" % push.body)
    expect(parse_status(push.status)[0] == 0, "push_me: push status %r" % push.status)
    expect(reply.seq == 30 and reply.status == "code=0", "push_me: reply %r" % reply)
    expect(json.loads(reply.body) == "pushed", "push_me: reply body %r" % reply.body)


def check_unknown(c):
    c.send(pack(40, CALL, "/home/nope", body=b"{}"))
    got = c.read_raw()
    want = pack(40, REPLY, "", "code=404&msg=Not%20Found&cause=", "", 0, b"")
    expect(got == want, "unknown method: got %s, want %s" % (got.hex(), want.hex()))


def check_goldens(c):
    # (a) names /home/echo?x=1, which v6 does not route: golden b2 exactly.
    c.send(golden("a_call_echo_query"))
    got = c.read_raw()
    expect(got == golden("b2_reply_not_found"), "golden a -> %s, not b2" % got.hex())
    cases = [
        (golden("e2_call_plain"), "0000001900013102000006636f64653d3000007368656c6c6f"),
        (golden("e_call_protobuf"), "0000001800013102000006636f64653d3000007008011002"),
        # The heartbeat CALL seen live, and its REPLY (json null).
        (
            bytes.fromhex("00000023000132010a2f6865617274626561740006636f64653d30000568625f3d336a"),
            "0000001800013202000006636f64653d3000006a6e756c6c",
        ),
    ]
    for call, reply in cases:
        c.send(call)
        got = c.read_raw()
        expect(got.hex() == reply, "golden %s -> %s, want %s" % (call.hex(), got.hex(), reply))
    # (j): escaped meta, and X-Accept-Body-Codec=115 asks for a plain reply;
    # the echo's bytes come back as they were, under codec s.
    c.send(golden("j_call_meta_escapes"))
    f = c.read()
    expect(f.seq == 36 and f.status == "code=0", "golden j: %r" % f)
    expect(f.codec == PLAIN and f.body == b'"x"', "golden j: reply codec/body %r" % f)
    # The heartbeat PUSH gets no answer: the next frame is the echo's reply.
    c.send(golden("i_heartbeat_push") + pack(50, CALL, "/home/echo", codec=PLAIN, body=b"after"))
    got = c.read_raw()
    expect(got == ok_reply(50, PLAIN, b"after"), "after heartbeat push: %s" % got.hex())


def check_filters(c):
    for seq, xfer in [(60, b"g"), (61, b"mg")]:
        body = json.dumps({"n": seq, "text": "squeeze me " * 20}).encode()
        call = pack(seq, CALL, "/home/echo", meta=encode_meta([("k 1", "v&=/\u00e9")]), body=body, xfer=xfer)
        expect(call[4] == len(xfer) and call[5 : 5 + len(xfer)] == xfer, "packer wrote no filter ids")
        c.send(call)
        raw = c.read_raw()
        expect(raw[4] == len(xfer) and raw[5 : 5 + len(xfer)] == xfer, "filters %r: reply ids %r" % (xfer, raw[4 : 5 + len(xfer)]))
        f = unpack(raw)
        expect((f.seq, f.mtype, f.status, f.codec, f.body) == (seq, REPLY, "code=0", JSON, body), "filters %r: %r" % (xfer, f))


def check_hostile(port, host):
    # A size under 5 + N is a bad frame; an mtype of 9 is not a message type.
    for name, frame in [
        ("size 3", b"\x00\x00\x00\x03"),
        ("mtype 9", pack(1, 9, "/home/echo", body=b"{}")),
    ]:
        c = Conn(port, host)
        try:
            c.send(frame)
            expect(c.closed_by_server(), "%s: the server kept the connection open for %ss" % (name, TIMEOUT))
        finally:
            c.close()
    c = Conn(port, host)
    try:
        c.send(pack(1, CALL, "/home/echo", codec=PLAIN, body=b"still here"))
        got = c.read_raw()
        expect(got == ok_reply(1, PLAIN, b"still here"), "after hostile frames: %s" % got.hex())
    finally:
        c.close()


def self_test():
    """The packer against the spec's own vectors, before trusting it."""
    expect(seq_text(2147483647) == "zik0zj" and seq_text(-5) == "-5" and seq_text(36) == "10", "seq text")
    expect(seq_value("zik0zj") == 2147483647 and seq_value("-5") == -5, "seq value")
    expect(escape("k 1") == "k%201" and escape("v&=/\u00e9") == "v%26%3D%2F%C3%A9", "escape")
    a = pack(1, CALL, "/home/echo?x=1", meta="a=b", body=b'{"a":1}')
    expect(a == golden("a_call_echo_query"), "pack != golden a")
    meta = encode_meta([("k 1", "v&=/\u00e9"), ("k", "1"), ("k", "2"), ("X-Accept-Body-Codec", "115")])
    expect(pack(36, CALL, "/home/echo", meta=meta, body=b'"x"') == golden("j_call_meta_escapes"), "pack != golden j")
    expect(pack(-5, PUSH, "/x") == golden("g2_push_seq_negative"), "pack != golden g2")
    d = unpack(golden("d_push_gzip"))
    d2 = unpack(golden("d2_push_plain"))
    f = unpack(golden("f_push_md5_gzip"))
    expect(d.body == d2.body == f.body == b'{"hello":"world"}', "unpack of golden d/d2/f")
    expect(parse_status(unpack(golden("c_reply_error_status")).status) == (1234, "home fail", "requested failure: \u00fc"), "status parse")


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[-1])
        return 2
    port = int(sys.argv[1])
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    failures = []

    def run(name, fn, *args):
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failures.append("%s: %s: %s" % (name, type(e).__name__, e))

    run("self test", self_test)
    conns = []
    try:
        main_conn = Conn(port, host)
        conns.append(main_conn)
        for name, fn in [
            ("echoes", check_echoes),
            ("pipelined", check_pipelined),
            ("fail", check_fail),
            ("push_me", check_push_me),
            ("unknown", check_unknown),
            ("filters", check_filters),
        ]:
            run(name, fn, main_conn)
        golden_conn = Conn(port, host)
        conns.append(golden_conn)
        run("goldens", check_goldens, golden_conn)
    except OSError as e:
        failures.append("connect: %s" % e)
    finally:
        for c in conns:
            c.close()
    run("hostile", check_hostile, port, host)
    if failures:
        for f in failures:
            print("FAILED " + f)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
