"""Reads a `mayfly scan --validate` report, the fake providers' request log
and the expected verdicts; prints the figures of `bench/run_validate.sh`."""

import json
import sys
from collections import defaultdict

report, log, expected_path, time_path, rate, per_host = sys.argv[1:7]
rate, per_host = float(rate), int(per_host)
expected = json.load(open(expected_path))
secrets = json.load(open(report))["secrets"]
requests = [json.loads(line) for line in open(log) if line.strip()]
wall, user, sys_, rss = open(time_path).read().split()[-4:]

verdicts = {s["secret"]: s.get("validation", {}).get("status") for s in secrets if s["secret"] in expected}
right = sum(1 for v, e in expected.items() if verdicts.get(v) == e)
by_host = defaultdict(list)
for r in requests:
    by_host[r["host"]].append((r["start"], r["end"]))
worst_in_flight, worst_second, tightest = 0, 0, None
for host, spans in by_host.items():
    spans.sort()
    for start, _ in spans:
        worst_in_flight = max(worst_in_flight, sum(1 for s, e in spans if s <= start < e))
        worst_second = max(worst_second, sum(1 for s, _ in spans if start <= s < start + 1.0))
    for (a, _), (b, _) in zip(spans, spans[1:]):
        tightest = b - a if tightest is None else min(tightest, b - a)
print(f"| {len(expected)} | {len(by_host)} | {len(requests)} | {right} / {len(expected)} | {wall} | {float(user) + float(sys_):.2f} | "
      f"{int(rss) // 1024} | {worst_in_flight} (limit {per_host}) | {worst_second} (limit {rate:g}/s) | "
      f"{(tightest or 0) * 1000:.1f} ms (interval {1000 / rate:.1f} ms) |")
ok = right == len(expected) and worst_in_flight <= per_host and float(wall) < 5.0
sys.exit(0 if ok else 1)
