"""Writes bench/run_proxy.sh's figures (from its environment) as JSON and
prints the table and the targets."""

import json
import os
import subprocess
import sys
import time

e = os.environ
first = json.loads(e["FIRST"])
names = ("direct", "nginx", "mayfly")


def per(prefix, kind=float):
    return {n: kind(e[prefix + "_" + n.upper()]) for n in names}


peak, connections = per("PEAK"), per("C", int)
half = {n: {"got": float(e["GOT_" + n.upper()]), "p50_ms": float(e["P50_" + n.upper()]),
            "p99_ms": float(e["P99_" + n.upper()])} for n in names}
ratio = round(peak["mayfly"] / peak["nginx"], 2)
added_p99 = round(half["mayfly"]["p99_ms"] - half["direct"]["p99_ms"], 2)
first_over = round((first["mayfly"]["p99_us"] - first["direct"]["p99_us"]) / 1000, 3)
with open("/proc/loadavg") as f:
    load = " ".join(f.read().split()[:3])
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                     capture_output=True, text=True).stdout.strip()
out = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "machine": {"nproc": os.cpu_count(), "cpu": cpu, "load_after": load},
    "tools": {"nginx": e["NGINX_VERSION"], "mayfly": e["MAYFLY_VERSION"]},
    "settings": {"duration_s": int(e["DURATION"]), "connections": e["CONNECTIONS"], "half_peak_rate": int(e["HALF"])},
    "peak_requests_per_s": peak,
    "peak_connections": connections,
    "p99_at_peak": {n: e["P99PEAK_" + n.upper()] for n in names},
    "mayfly_server_cpu_us_per_request_at_peak": int(e["CPU_MAYFLY"]),
    "half_peak": half,
    "first_chunk_us": first,
    "targets": {
        "mayfly_over_nginx_peak": {"value": ratio, "want": ">= 0.5", "met": ratio >= 0.5},
        "mayfly_added_p99_ms_at_half_peak": {"value": added_p99, "want": "< 1", "met": added_p99 < 1},
        "mayfly_first_chunk_p99_ms_over_direct": {"value": first_over, "want": "< 1", "met": first_over < 1},
    },
}
with open(sys.argv[1], "w") as f:
    json.dump(out, f, indent=2)

row = "%-40s %14s %14s %14s"
print()
print(row % ("", "direct", "nginx", "Mayfly"))
print(row % ("peak requests/s (wrk)", *(f"{peak[n]:,.0f}" for n in names)))
print(row % ("  connections", *(connections[n] for n in names)))
print(row % ("  p99 at peak", *(out["p99_at_peak"][n] for n in names)))
print(row % (f"at {e['HALF']} requests/s: got (hey)", *(f"{half[n]['got']:,.0f}" for n in names)))
print(row % ("  p50 ms", *(half[n]["p50_ms"] for n in names)))
print(row % ("  p99 ms", *(half[n]["p99_ms"] for n in names)))
for k in ("p50_us", "p99_us", "max_us"):
    print(row % ("first chunk delay " + k.replace("_us", " µs"), *(first[n][k] for n in names)))
print()
print(f"Mayfly server CPU per proxied request at peak: {e['CPU_MAYFLY']} µs")
for name, t in out["targets"].items():
    print(f"target {name}: {t['value']} (want {t['want']}): {'met' if t['met'] else 'NOT met'}")
print(f"load average after: {load}")
print(f"full figures: {sys.argv[1]}")
