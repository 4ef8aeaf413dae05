"""Latency an MCP stdio gate adds: the same JSON-RPC client calls the same
MCP server (built with the official MCP Python SDK) directly and through
`mayfly run --mcp-gate`, one call at a time, alternating between the two
(so both see the same moments of the machine). The warm-up runs back to
back and gives the gated path's peak rate; the timed calls are paced at
half of it.

Usage: gate_latency.py MAYFLY SERVER_SCRIPT N WARMUP
(MAYFLY_SERVER and the local socket come from the environment.)
Prints one JSON object: per path, p50/p90/p99/max of a tools/call in ms.
`remote_latency.py` measures other paths with the same `measure`.
"""

import json
import subprocess
import sys
import time


def session(command):
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    next_id = [0]

    def request(method, params):
        next_id[0] += 1
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": next_id[0], "method": method, "params": params}) + "\n")
        proc.stdin.flush()
        while True:
            message = json.loads(proc.stdout.readline())
            if message.get("id") == next_id[0]:
                return message

    request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "bench", "version": "1"}})
    proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
    proc.stdin.flush()
    return proc, request


def measure(commands, n, warmup):
    """Calls each path in turn, one call at a time, so all see the same
    machine: direct, gated, direct, gated... The last path's warm-up rate
    is its peak; the timed calls are paced at half of it. Returns the
    percentiles per path and that peak."""
    sessions = [session(command) for command in commands]
    calls = [lambda request=request: request("tools/call", {"name": "search_issues", "arguments": {"query": "bug"}})
             for _, request in sessions]
    # Warm-up back to back: the last path's peak rate, one call at a time.
    last = 0.0
    for _ in range(warmup):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            assert "result" in call()
            if i == len(calls) - 1:
                last += time.perf_counter() - start
    peak = warmup / last
    # Timed at half that peak: a round of calls every two of its calls' time.
    interval = 2 / peak
    times = [[] for _ in calls]
    next_start = time.perf_counter()
    for _ in range(n):
        next_start += interval
        for call, timed in zip(calls, times):
            start = time.perf_counter()
            answer = call()
            timed.append((time.perf_counter() - start) * 1000)
            assert "result" in answer, answer
        pause = next_start - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    for proc, _ in sessions:
        proc.stdin.close()
        proc.wait(timeout=30)
    out = []
    for timed in times:
        timed.sort()
        pick = lambda q: round(timed[min(len(timed) - 1, int(q * len(timed)))], 3)
        out.append({"n": n, "p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99), "max_ms": round(timed[-1], 3)})
    return out, round(peak)


def added(out, base, path):
    """What `path` adds to `base`, at p50 and p99."""
    out["added_p50_ms"] = round(out[path]["p50_ms"] - out[base]["p50_ms"], 3)
    out["added_p99_ms"] = round(out[path]["p99_ms"] - out[base]["p99_ms"], 3)


if __name__ == "__main__":
    mayfly, server, n, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    direct = ["python3", server]
    gated = [mayfly, "run", "--mcp-gate", "bench", "--purpose", "bench", "--owner", "bench", "--", "python3", server]
    (direct_ms, gated_ms), peak = measure([direct, gated], n, warmup)
    out = {"direct": direct_ms, "gated": gated_ms, "gated_peak_per_second": peak,
           "paced_per_second": round(peak / 2)}
    added(out, "direct", "gated")
    print(json.dumps(out))
