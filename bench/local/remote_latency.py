"""What wrapping a remote MCP server costs a tool call: the same JSON-RPC
client calls the same remote server (the official MCP Python SDK over
streamable HTTP, `remote_server.py`, which wants an API key) through
`mayfly mcp connect` twice, alternating:

- **connect**: `mayfly mcp connect URL --header "Authorization: Bearer KEY"`,
  the key in the command line (what an unwrapped configuration amounts to,
  with the stdio bridge every stdio client needs);
- **wrapped**: what `mayfly mcp wrap` writes, `mayfly run --inject ENTRY
  --mcp-gate NAME -- mayfly mcp connect URL --through ENTRY`: the relay,
  the broker's proxy adding the key from custody, and the policy gate.

Usage: remote_latency.py MAYFLY URL KEY ENTRY N WARMUP
(MAYFLY_SERVER and the local socket come from the environment; ENTRY is a
custody entry holding KEY for the server's origin.)
Prints one JSON object like gate_latency.py's.
"""

import json
import sys

from gate_latency import added, measure

mayfly, url, key, entry = sys.argv[1:5]
n, warmup = int(sys.argv[5]), int(sys.argv[6])
connect = [mayfly, "mcp", "connect", url, "--header", f"Authorization: Bearer {key}"]
wrapped = [mayfly, "run", "--inject", entry, "--mcp-gate", "bench-remote", "--purpose", "bench",
           "--owner", "bench", "--", mayfly, "mcp", "connect", url, "--through", entry]
(connect_ms, wrapped_ms), peak = measure([connect, wrapped], n, warmup)
out = {"connect": connect_ms, "wrapped": wrapped_ms, "wrapped_peak_per_second": peak,
       "paced_per_second": round(peak / 2)}
added(out, "connect", "wrapped")
print(json.dumps(out))
