-- wrk script: POST /api/v1/transfers as random bench users, 1.00 to another random bench user.
-- wrk ... -s bench/transfer.lua URL -- USERS_LUA KEY_PREFIX
--   USERS_LUA   a Lua file returning {tokens = {...}, ids = {...}} (written by bench.run)
--   KEY_PREFIX  makes every Idempotency-Key of this run unique (with thread number and counter)
-- done() prints one line "BENCH_JSON {...}" with the latency percentiles and the status codes.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

function init(args)
  local data = dofile(args[1])
  tokens, ids, count = data.tokens, data.ids, #data.tokens
  key_prefix = args[2] .. "-" .. thread_number .. "-"
  sent = 0
  statuses = {}
  math.randomseed(os.time() * 1000 + thread_number)
end

function request()
  sent = sent + 1
  local sender = math.random(count)
  local recipient = math.random(count - 1)
  if recipient >= sender then
    recipient = recipient + 1
  end
  local headers = {
    ["Authorization"] = "Bearer " .. tokens[sender],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = key_prefix .. sent,
  }
  local body = '{"recipient":"' .. ids[recipient] .. '","amount":"1.00"}'
  return wrk.format("POST", "/api/v1/transfers", headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local codes = {}
  for _, thread in ipairs(threads) do
    for status, number in pairs(thread:get("statuses")) do
      codes[status] = (codes[status] or 0) + number
    end
  end
  local parts = {}
  for status, number in pairs(codes) do
    table.insert(parts, string.format('"%d":%d', status, number))
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p95":%d,"p99":%d,' ..
    '"p999":%d},"statuses":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency:percentile(99.9),
    table.concat(parts, ",")))
end
