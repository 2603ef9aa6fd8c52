#!/usr/bin/env python3
"""A normal request's latency while N slow clients are held open (issue 10, item 5).

Loopback only, bounded in count and time. Usage:
  scripts/slow_clients.py http://127.0.0.1:PORT [--slow 500] [--requests 200] [--max-secs 60]
Each slow client sends a request head one byte a second and is reopened when the
server closes it (the header-read timeout), so N stay held throughout.
"""
import argparse, http.client, socket, statistics, threading, time, urllib.parse

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("--slow", type=int, default=500)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--max-secs", type=float, default=60)
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.base)
    host, port = u.hostname, u.port
    assert host in ("127.0.0.1", "localhost", "::1"), "loopback only"
    deadline = time.monotonic() + a.max_secs
    stop = threading.Event()
    head = b"GET /api/status/summary HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200

    def measure(label):
        lat, codes = [], {}
        for _ in range(a.requests):
            if time.monotonic() > deadline:
                break
            t = time.perf_counter()
            c = http.client.HTTPConnection(host, port, timeout=10)
            try:
                c.request("GET", "/api/status/summary")
                r = c.getresponse(); r.read()
                codes[r.status] = codes.get(r.status, 0) + 1
            except Exception as e:
                codes[type(e).__name__] = codes.get(type(e).__name__, 0) + 1
            finally:
                c.close()
            lat.append((time.perf_counter() - t) * 1000)
        lat.sort()
        q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
        print(f"{label}: {len(lat)} requests, p50 {q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, "
              f"max {lat[-1]:.2f} ms, mean {statistics.mean(lat):.2f} ms, statuses {codes}")

    measure("baseline (no slow clients)")
    held = [0]; lock = threading.Lock()

    def slow_client():
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                s = socket.create_connection((host, port), timeout=5)
            except OSError:
                time.sleep(0.2); continue
            with lock: held[0] += 1
            try:
                for b in head:
                    if stop.is_set(): break
                    s.send(bytes([b]))
                    stop.wait(1.0)
            except OSError:
                pass
            finally:
                with lock: held[0] -= 1
                s.close()

    threads = [threading.Thread(target=slow_client, daemon=True) for _ in range(a.slow)]
    for t in threads: t.start()
    t0 = time.monotonic()
    while held[0] < a.slow and time.monotonic() - t0 < 20:
        time.sleep(0.1)
    time.sleep(1.5)
    print(f"slow clients held: {held[0]}")
    measure(f"with {a.slow} slow clients")
    print(f"slow clients held at the end: {held[0]}")
    stop.set()

main()
