-- wrk script for bench/run_broker.sh: every request is the same POST (or GET).
-- Used unchanged for OpenBao's JWT login and for Mayfly's token exchange, so
-- both servers see the same load generator doing the same work per request.
--
-- Settings come from the environment (wrk passes nothing else to the script):
--   BENCH_METHOD        POST (default) or GET (no body: the HTTP floor run)
--   BENCH_BODY_FILE     file holding the request body (read once per thread)
--   BENCH_CONTENT_TYPE  Content-Type header (default application/json)
--   BENCH_AUTHORIZATION optional Authorization header value
--   BENCH_WRK_JSON      optional file: done() writes the figures there as JSON

local function read_file(path)
  local f = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
  local data = f:read("*a")
  f:close()
  return data
end

local method = os.getenv("BENCH_METHOD") or "POST"
wrk.method = method
if method == "POST" then
  wrk.body = read_file(assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE is not set"))
  wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
end
local authz = os.getenv("BENCH_AUTHORIZATION")
if authz and authz ~= "" then
  wrk.headers["Authorization"] = authz
end

-- Machine-readable summary; latency figures are in microseconds.
function done(summary, latency, requests)
  local path = os.getenv("BENCH_WRK_JSON")
  if not path or path == "" then return end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  local f = assert(io.open(path, "w"))
  f:write(string.format(
    '{"duration_s": %.3f, "requests": %d, "bytes": %d, "requests_per_s": %.1f, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "stdev": %.1f, "min": %d, "max": %d, ' ..
    '"p50": %d, "p75": %d, "p90": %d, "p99": %d, "p99_9": %d}}\n',
    seconds, summary.requests, summary.bytes, summary.requests / seconds,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.min, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
  f:close()
end
