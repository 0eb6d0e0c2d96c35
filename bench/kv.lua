-- wrk script for the shard bench: each request is METHOD /kv/PREFIXN for a
-- random N in 1..BENCH_KEYS, and the end prints one machine-readable RESULT
-- line. From the environment:
--   BENCH_KEYS=1000     distinct keys
--   BENCH_PREFIX=key-   what the key's number follows
--   BENCH_METHOD=GET    GET, or PUT with a body of BENCH_BODY bytes
--   BENCH_BODY=0        the PUT body's size
--   BENCH_CLOSE=0       1 asks for a new connection per request (Connection: close)
--   BENCH_PACE_MS=0     > 0 makes each connection wait after each answer
--                       before its next request, 0 to 2 × BENCH_PACE_MS ms
--                       at random (BENCH_PACE_MS on average), so that the
--                       connections do not fire in step: a moderate load
--                       that does not saturate and arrives spread out
--   BENCH_IDLE=0        1 makes each connection send one request, or two,
--                       and then wait for the rest of the run: connections
--                       kept alive and idle
local n = tonumber(os.getenv("BENCH_KEYS") or "1000")
local prefix = os.getenv("BENCH_PREFIX") or "key-"
local method = os.getenv("BENCH_METHOD") or "GET"
local bodySize = tonumber(os.getenv("BENCH_BODY") or "0")
local close = os.getenv("BENCH_CLOSE") == "1"
local pace = tonumber(os.getenv("BENCH_PACE_MS") or "0")
local idle = os.getenv("BENCH_IDLE") == "1"
local reqs = {}
reqBytes = 0 -- the mean size of a request, head and body (global: done reads it)
local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  local body = nil
  if bodySize > 0 then
    body = string.rep("v", bodySize)
  end
  if close then
    wrk.headers["Connection"] = "close"
  end
  local total = 0
  for i = 1, n do
    reqs[i] = wrk.format(method, "/kv/" .. prefix .. i, nil, body)
    total = total + #reqs[i]
  end
  reqBytes = total / n
  -- A different sequence per thread, the same one on every run.
  math.randomseed(1000 + (id or 0))
end

if idle then
  -- Each connection's first answers come as every connection starts, all
  -- at once; after as many as there are connections, wait an hour.
  local answers = 0
  local conns = tonumber(os.getenv("BENCH_IDLE_CONNS") or "1000")
  function delay()
    answers = answers + 1
    if answers <= conns then
      return 0
    end
    return 3600 * 1000
  end
elseif pace > 0 then
  function delay()
    return math.random(0, 2 * pace)
  end
end

function request()
  return reqs[math.random(n)]
end

function done(summary, latency, requests)
  local e = summary.errors
  local rb = 0
  if threads[1] then
    rb = threads[1]:get("reqBytes") or 0
  end
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "bytes_read=%d request_bytes=%.0f " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.bytes, summary.requests * rb,
    e.connect, e.read, e.write, e.status, e.timeout))
end
