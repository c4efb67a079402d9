-- wrk script for `POST /api/v1/dns/create`.
--
-- Every request carries a distinct domain, h<thread>-<n>.bench.example.test, so no two
-- requests in a run collide. With BENCH_TOKEN set (scripts/bench.sh sets it for every dnsorch
-- that has API tokens), every request carries `Authorization: Bearer <BENCH_TOKEN>`; the body
-- is the same either way (see BENCH_CONNECTION_CLOSE below). Non-2xx answers are counted per thread and summed in done(),
-- which prints one machine-readable line:
--   BENCH requests=.. duration_s=.. rps=.. p50_ms=.. p99_ms=.. non2xx=.. socket_errors=..

local threads = {}
local next_id = 1

-- Runs in the main Lua state, once per thread, before the threads start.
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- The rest runs in each thread's own Lua state.
local n = 0
non2xx = 0 -- global, so done() can read it with thread:get("non2xx")

local headers = { ["Content-Type"] = "application/json" }
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
  headers["Authorization"] = "Bearer " .. token
end
-- With BENCH_CONNECTION_CLOSE=1, every request asks for its connection to be closed, so wrk
-- opens (and, over HTTPS, handshakes) a new one for each.
if os.getenv("BENCH_CONNECTION_CLOSE") == "1" then
  headers["Connection"] = "close"
end

function request()
  n = n + 1
  local body = string.format(
    '{"context":{"account_id":"bench"},"resource":{"record_type":"A",' ..
      '"domain":"h%d-%d.bench.example.test","target":"192.0.2.%d"}}',
    id, n, n % 254 + 1)
  return wrk.format("POST", "/api/v1/dns/create", headers, body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if non2xx <= 3 then
      io.stderr:write(string.format("non-2xx answer %d: %s\n", status, body))
    end
  end
end

-- Runs in the main state after the threads stop.
function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non2xx") or 0)
  end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d " ..
      "wrk_non2xx3xx=%d socket_errors=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad,
    e.status, e.connect + e.read + e.write + e.timeout))
end
