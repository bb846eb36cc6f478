"""Deterministic segment payloads shared with tests/interop_python.rs."""


def payload(seq: int) -> bytes:
    size = 1000 + (seq * 7919) % 50000
    return bytes((seq * 31 + k) % 256 for k in range(size))
