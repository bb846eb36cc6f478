"""The two peers of bench/output_burst.sh in one process: a webhook receiver
(HTTP/1.1 on loopback, answering each POST after WEBHOOK_DELAY_MS) and an
MQTT 3.1.1 subscriber at QoS 1 (raw socket, standard library only). Each
records the detection number `payload.n` of what it got. Touches READY once
subscribed; when both have N, or nothing new came for STALL seconds, prints
one line per peer: received, whether in fire order (each number above the
one before: none repeated or reordered; gaps are what `received` counts),
and the wall-clock time (epoch seconds) of the last arrival.
Usage: python3 burst_peers.py HTTP_PORT BROKER_PORT N READY_FILE
"""
import json
import os
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

HTTP_PORT, BROKER_PORT, N, READY = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
DELAY = float(os.environ.get("WEBHOOK_DELAY_MS", "0")) / 1000
STALL = float(os.environ.get("STALL", "10"))
got = {"webhook": [], "mqtt": []}
last = {"webhook": 0.0, "mqtt": 0.0}


def record(peer, body):
    try:
        n = json.loads(body)["payload"]["n"]
    except (ValueError, KeyError, TypeError):
        n = -1
    got[peer].append(n)
    last[peer] = time.time()


class Hook(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if DELAY:
            time.sleep(DELAY)
        record("webhook", body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def string(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def packet(kind, body):
    n, rem = len(body), b""
    while True:
        byte, n = n % 128, n // 128
        rem += bytes([byte | (128 if n else 0)])
        if not n:
            return bytes([kind]) + rem + body


def read_packet(sock, buf):
    def need(k):
        while len(buf) < k:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError
            buf.extend(chunk)
    need(2)
    mult, length, i = 1, 0, 1
    while True:
        need(i + 1)
        b = buf[i]
        length += (b & 127) * mult
        mult *= 128
        i += 1
        if not b & 128:
            break
    need(i + length)
    kind, body = buf[0], bytes(buf[i:i + length])
    del buf[:i + length]
    return kind, body


def subscribe():
    for _ in range(100):
        try:
            sock = socket.create_connection(("127.0.0.1", BROKER_PORT))
            break
        except ConnectionRefusedError:
            time.sleep(0.1)
    else:
        raise SystemExit(f"no MQTT broker on 127.0.0.1:{BROKER_PORT}")
    buf = bytearray()
    sock.sendall(packet(0x10, string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 600) + string("burst-sub")))
    read_packet(sock, buf)  # CONNACK
    sock.sendall(packet(0x82, struct.pack("!H", 1) + string("trickle-edge/#") + bytes([1])))
    read_packet(sock, buf)  # SUBACK
    open(READY, "w").close()
    while True:
        kind, body = read_packet(sock, buf)
        if kind >> 4 != 3:
            continue
        qos = (kind >> 1) & 3
        tlen = struct.unpack("!H", body[:2])[0]
        at = 2 + tlen
        if qos:
            sock.sendall(packet(0x40, body[at:at + 2]))
            at += 2
        record("mqtt", body[at:])


server = HTTPServer(("127.0.0.1", HTTP_PORT), Hook)
threading.Thread(target=server.serve_forever, daemon=True).start()
threading.Thread(target=subscribe, daemon=True).start()
seen, still = -1, 0.0
while still < STALL and (len(got["webhook"]) < N or len(got["mqtt"]) < N):
    time.sleep(0.2)
    now = len(got["webhook"]) + len(got["mqtt"])
    still = still + 0.2 if now == seen else 0.0
    seen = now
for peer in ("webhook", "mqtt"):
    g = got[peer]
    ordered = all(a < b for a, b in zip(g, g[1:]))
    print(f"{peer}: received={len(g)} of {N} in_order={'yes' if ordered else 'no'} last_at={last[peer]:.3f}")
