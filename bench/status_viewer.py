"""A status-page viewer without a browser, for bench/status_page.sh: loads
the page the way page.js does (GET /, its CSS and JS, the SSE stream, then
/status/snapshot.jpg each time a state event names a new snapshot) and
times the load to the first frame. Standard library only.

Usage:
  python3 bench/status_viewer.py watch HOST:PORT SECONDS
      one page load (its timings as a JSON line), then stays connected,
      fetching every new snapshot, for SECONDS
  python3 bench/status_viewer.py loads HOST:PORT N
      N page loads one after another, each closed once its first fresh
      frame arrived, waiting between loads until the agent counts no viewer
Each load prints {"first_frame_ms": …, "fresh_frame_ms": …, "stale": …}:
first_frame_ms from the GET of the page to the first snapshot JPEG
received (possibly one kept from an earlier viewer), fresh_frame_ms to
the first JPEG encoded after this viewer connected.
"""
import http.client
import json
import sys
import time


def get(host, port, path):
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


class Stream:
    """The SSE stream's state events, parsed."""

    def __init__(self, host, port):
        self.conn = http.client.HTTPConnection(host, port, timeout=30)
        self.conn.request("GET", "/status/stream")
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, self.resp.status

    def next_state(self):
        data = []
        while True:
            line = self.resp.readline()
            if not line:
                raise EOFError("stream ended")
            line = line.decode().rstrip("\r\n")
            if line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and data:
                return json.loads("\n".join(data))

    def close(self):
        self.conn.close()


def load(host, port):
    """One page load; returns (timings, open stream, last snapshot seq)."""
    t0 = time.monotonic()
    for path in ("/", "/status/page.css", "/status/page.js"):
        status, _ = get(host, port, path)
        assert status == 200, (path, status)
    stream = Stream(host, port)
    first = stream.next_state()
    before = first["snapshot"]["encoded"]
    out = {"first_frame_ms": None, "fresh_frame_ms": None, "stale": False}
    seq = None
    state = first
    while True:
        s = state["snapshot"]["seq"]
        if s is not None and s != seq:
            status, jpeg = get(host, port, f"/status/snapshot.jpg?seq={s}")
            if status == 200 and jpeg[:2] == b"\xff\xd8":
                ms = round((time.monotonic() - t0) * 1000, 1)
                if out["first_frame_ms"] is None:
                    out["first_frame_ms"] = ms
                    out["stale"] = s <= before
                if s > before:
                    out["fresh_frame_ms"] = ms
                    return out, stream, s
                seq = s
        state = stream.next_state()


def viewers(host, port):
    _, body = get(host, port, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith("trickle_edge_status_viewers "):
            return float(line.split()[1])
    return None


def main():
    mode, addr, n = sys.argv[1], sys.argv[2], sys.argv[3]
    host, port = addr.rsplit(":", 1)
    port = int(port)
    if mode == "watch":
        timings, stream, seq = load(host, port)
        print(json.dumps(timings), flush=True)
        until = time.monotonic() + float(n)
        fetched = 1
        while time.monotonic() < until:
            s = stream.next_state()["snapshot"]["seq"]
            if s is not None and s != seq:
                get(host, port, f"/status/snapshot.jpg?seq={s}")
                seq, fetched = s, fetched + 1
        stream.close()
        print(json.dumps({"snapshots_fetched": fetched}), flush=True)
    elif mode == "loads":
        for _ in range(int(n)):
            while viewers(host, port) != 0:
                time.sleep(0.1)
            # A moment with the branch closed, as between two visits.
            time.sleep(1.0)
            timings, stream, _ = load(host, port)
            stream.close()
            print(json.dumps(timings), flush=True)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
