#!/usr/bin/env python3
"""The disk floor of a durable commit: append 4 KiB to a file and fsync it,
COUNT times, in DIR (the folder the broker's SQLite file lives in), as a
WAL commit with synchronous=FULL does. Prints JSON: count, p50, p90, p99,
p99.9 and max in milliseconds.

Usage: fsync_probe.py DIR [--count 2000]
"""
import argparse
import json
import os
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dir")
    ap.add_argument("--count", type=int, default=2000)
    args = ap.parse_args()
    path = os.path.join(args.dir, "fsync-probe.bin")
    block = os.urandom(4096)
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(args.count):
            os.write(fd, block)
            start = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - start) * 1e3)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()

    def pct(p: float) -> float:
        return round(times[min(len(times) - 1, int(p / 100 * len(times)))], 3)

    print(json.dumps({"count": len(times), "mean_ms": round(statistics.fmean(times), 3),
                      "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
                      "p99_9_ms": pct(99.9), "max_ms": round(times[-1], 3)}))


if __name__ == "__main__":
    main()
