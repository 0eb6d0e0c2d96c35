-- wrk script for the shard bench: each request is GET /kv/key-N for a random
-- N in 1..BENCH_KEYS, and the end prints one machine-readable RESULT line.
local n = tonumber(os.getenv("BENCH_KEYS") or "1000")
-- BENCH_PACE_MS > 0 makes each connection wait after each answer before its
-- next request, 0 to 2 × BENCH_PACE_MS ms at random (BENCH_PACE_MS on
-- average), so that the connections do not fire in step: a moderate load
-- that does not saturate and arrives spread out, not in bursts.
local pace = tonumber(os.getenv("BENCH_PACE_MS") or "0")
local reqs = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  for i = 1, n do
    reqs[i] = wrk.format("GET", "/kv/key-" .. i)
  end
  -- A different sequence per thread, the same one on every run.
  math.randomseed(1000 + (id or 0))
end

if pace > 0 then
  function delay()
    return math.random(0, 2 * pace)
  end
end

function request()
  return reqs[math.random(n)]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
