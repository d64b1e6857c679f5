"""A bounded request loop for load-balancer tests, run as a second process (loopback only).

    python -m meseta.testing.http_load http://127.0.0.1:10000/env.txt --stop-file F --out R.json
        [--seconds 120] [--concurrency 4]

Every request opens a new connection (so each one goes through HAProxy's accept) and reads the
whole answer. It stops when the stop file appears or after `--seconds`, and writes
{"ok": n, "failed": n, "errors": {reason: count}, "seconds": s} to `--out`.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import threading
import time
from collections import Counter
from urllib.parse import urlsplit


def _worker(url: str, stop: threading.Event, lock: threading.Lock, counts: Counter,
            errors: Counter) -> None:
    split = urlsplit(url)
    assert split.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
    path = split.path or "/"
    while not stop.is_set():
        conn = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            response.read()
            ok, reason = response.status == 200, f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        with lock:
            counts["ok" if ok else "failed"] += 1
            if not ok:
                errors[reason] += 1


def run(url: str, stop_file: str, seconds: float, concurrency: int) -> dict:
    stop, lock = threading.Event(), threading.Lock()
    counts: Counter = Counter()
    errors: Counter = Counter()
    threads = [threading.Thread(target=_worker, args=(url, stop, lock, counts, errors), daemon=True)
               for _ in range(concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    while time.monotonic() - started < seconds and not os.path.exists(stop_file):
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(15)
    return {"ok": counts["ok"], "failed": counts["failed"], "errors": dict(errors),
            "seconds": round(time.monotonic() - started, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    result = run(args.url, args.stop_file, args.seconds, args.concurrency)
    with open(args.out + ".tmp", "w") as handle:
        json.dump(result, handle)
    os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
