#!/usr/bin/env python3
"""Writes protocol-v0.6.json: frames of the message types added after 0.4.4.

Upstream's Rust encoder (serde + ciborium) cannot run here, so this script
spells its encoding out by hand, independently of the Go package under test:
a struct is a definite-length map of its fields in declaration order, with
text keys; integers take their shortest head; Option::None is null unless
the field is skip_serializing_if (then it is left out); serde_bytes fields
are byte strings; an empty struct is an empty map. The envelope is the map
{"v", "t", "p"} in that order, p a byte string. Field names and orders are
upstream's (crates/protocol/lib: core.rs, exec.rs, tcp.rs, message.rs flags).

Usage: python3 protocol-v0.6.py > protocol-v0.6.json
"""
import json
import struct


def head(major, n):
    m = major << 5
    if n < 24:
        return bytes([m | n])
    if n <= 0xFF:
        return bytes([m | 24, n])
    if n <= 0xFFFF:
        return bytes([m | 25]) + struct.pack(">H", n)
    if n <= 0xFFFFFFFF:
        return bytes([m | 26]) + struct.pack(">I", n)
    return bytes([m | 27]) + struct.pack(">Q", n)


class Bytes(bytes):
    """A serde_bytes field: a CBOR byte string, {"hex": ...} in the JSON."""


def cbor(v):
    if v is None:
        return b"\xf6"
    if v is True:
        return b"\xf5"
    if v is False:
        return b"\xf4"
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, Bytes):
        return head(2, len(v)) + bytes(v)
    if isinstance(v, str):
        b = v.encode()
        return head(3, len(b)) + b
    if isinstance(v, list):
        return head(4, len(v)) + b"".join(cbor(x) for x in v)
    if isinstance(v, dict):
        return head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    raise TypeError(v)


def as_json(v):
    if isinstance(v, Bytes):
        return {"hex": bytes(v).hex()}
    if isinstance(v, dict):
        return {k: as_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [as_json(x) for x in v]
    return v


TERMINAL, SESSION_START = 1, 2
STEP05 = 0xFFFFFFFF // 128


def vector(name, t, id, flags, v, payload):
    p = cbor(payload)
    body = cbor({"v": v, "t": t, "p": Bytes(p)})
    frame = struct.pack(">IIB", 5 + len(body), id, flags) + body
    return {
        "name": name, "type": t, "id": id, "flags": flags, "v": v,
        "payload": as_json(payload),
        "payload_cbor_hex": p.hex(),
        "frame_hex": frame.hex(),
    }


VECTORS = [
    vector("ready_agent_version", "core.ready", 0, 0, 7,
           {"boot_time_ns": 118000000, "init_time_ns": 4200000, "ready_time_ns": 131000000,
            "agent_version": "0.6.14"}),
    vector("ready_v2_no_agent_version", "core.ready", 0, 0, 2,
           {"boot_time_ns": 1, "init_time_ns": 2, "ready_time_ns": 3}),
    vector("exec_stdin_error", "core.exec.stdin.error", 1, 0, 7,
           {"errno": 32, "errno_name": "EPIPE", "message": "Broken pipe (os error 32)"}),
    vector("exec_stdin_error_no_errno", "core.exec.stdin.error", 268435457, 0, 5,
           {"errno": None, "errno_name": None, "message": "stdin writer ended"}),
    vector("relay_client_disconnected_slot1", "core.relay.client.disconnected", 0, 0, 7,
           {"id_start": STEP05 + 1, "id_end_exclusive": 2 * STEP05}),
    vector("relay_client_disconnected_slot127", "core.relay.client.disconnected", 0, 0, 2,
           {"id_start": 127 * STEP05 + 1, "id_end_exclusive": 128 * STEP05}),
    vector("init_resolved", "core.init.resolved", 0, 0, 7,
           {"default_user": {"uid": 1000, "gid": 100}}),
    vector("init_resolved_root", "core.init.resolved", 0, 0, 6,
           {"default_user": {"uid": 0, "gid": 0}}),
    vector("init_ack", "core.init.ack", 0, 0, 7, {}),
    vector("clock_sync", "core.clock.sync", 0, 0, 7,
           {"unix_time_nanos": 1764619200123456789}),
    vector("tcp_connect", "core.tcp.connect", 33554433, SESSION_START, 4,
           {"host": "127.0.0.1", "port": 8080}),
    vector("tcp_connected", "core.tcp.connected", 33554433, 0, 4, {}),
    vector("tcp_data", "core.tcp.data", 33554433, 0, 4,
           {"data": Bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")}),
    vector("tcp_data_empty", "core.tcp.data", 7, 0, 7, {"data": Bytes(b"")}),
    vector("tcp_eof", "core.tcp.eof", 33554433, 0, 4, {}),
    vector("tcp_close", "core.tcp.close", 33554433, 0, 4, {}),
    vector("tcp_closed", "core.tcp.closed", 33554433, TERMINAL, 4, {}),
    vector("tcp_failed", "core.tcp.failed", 33554434, TERMINAL, 7,
           {"error": "connection refused (os error 111)"}),
    vector("core_error", "core.error", 9, TERMINAL, 5,
           {"kind": "unsupported_message_type", "message": "unknown message type: core.future",
            "offending_type": "core.future"}),
    vector("core_error_no_offending_type", "core.error", 10, TERMINAL, 7,
           {"kind": "malformed_message", "message": "envelope could not be decoded"}),
    vector("ping", "core.ping", 3, 0, 6, {}),
    vector("pong", "core.pong", 3, TERMINAL, 6, {}),
    vector("touch", "core.touch", 4, 0, 6, {}),
    vector("touched", "core.touched", 4, TERMINAL, 7, {"activity_seq": 4242}),
    # GuestBootstrap with every field at its default except two: the
    # skip_serializing_if fields are left out, security_profile is not.
    vector("bootstrap", "core.bootstrap", 0, 0, 7,
           {"hostname": "dev", "user": "1000:1000", "security_profile": "default"}),
]

if __name__ == "__main__":
    print(json.dumps(VECTORS, indent=2, ensure_ascii=False))
