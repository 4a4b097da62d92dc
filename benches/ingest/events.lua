-- wrk script for benches/ingest.rs and benches/delivery.rs: POST /v1/events with unique,
-- realistic events.
--
-- Arguments (after `--`): <run prefix> <events per request> <ingest key> [stamp]
--   events per request = 1 sends one event object; N > 1 sends {"events": [N objects]}.
-- Every event id is "<prefix>-<thread>-<counter>", so ids never repeat within a run and
-- the caller makes them unique across runs by changing the prefix. With the fourth
-- argument `stamp`, ids are "<prefix>-<thread>-<counter>-<send µs>": the wall clock
-- (CLOCK_REALTIME, microseconds) when the request was built, just before wrk writes it,
-- so a receiver can measure create → delivered per event; the first send and the first
-- and last 202 are then timed too. Stamping needs LuaJIT's ffi (Debian's wrk has it).
--
-- Each response is checked: status must be 202 and `"accepted":N` must equal the number
-- of events sent in that request. In `done` machine-readable lines are printed:
--   BENCH key=value ...            (totals; latencies and times in microseconds)
--   BENCHTHREADS <tid>=<events> …  (events sent per thread: its ids' counters are 1..n)
--   BENCHERR <status> <body>       (the first non-202 answers of each thread, if any)
-- which the Rust side parses. wrk calls `request` once before the run on the first
-- thread (to check the script) and never sends that request: its events count as sent
-- and never reach the server.

local threads = {}
local next_tid = 1

local has_ffi, ffi = pcall(require, "ffi")
local now_us = nil
if has_ffi then
   ffi.cdef [[
      typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
      int clock_gettime(int clk_id, bench_timespec *ts);
   ]]
   local ts = ffi.new("bench_timespec")
   now_us = function()
      ffi.C.clock_gettime(0, ts) -- CLOCK_REALTIME
      return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
   end
end

function setup(thread)
   thread:set("tid", next_tid)
   next_tid = next_tid + 1
   table.insert(threads, thread)
end

local ua = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
   .. "(KHTML, like Gecko) Version/17.4 Safari/605.1.15"

-- One event; %s/%d slots filled per event (the id's tail: "" or "-<send µs>").
local event_fmt = '{"event_id":"%s-%d-%d%s","event_name":"Purchase","event_time":%d,'
   .. '"action_source":"website",'
   .. '"event_source_url":"https://shop.example.com/checkout/thank-you",'
   .. '"user_data":{"email":"Buyer.%d.%d@Example.com","phone":"+1 (415) 555-%04d",'
   .. '"client_ip_address":"203.0.113.%d","client_user_agent":"' .. ua .. '",'
   .. '"fbp":"fb.1.1700000000000.%d"},'
   .. '"custom_data":{"currency":"EUR","value":%d.5,"order_id":"ord-%d-%d"}}'

function init(args)
   prefix = args[1] or "run"
   per_req = tonumber(args[2] or "1")
   key = args[3] or "bench_key"
   stamp = args[4] == "stamp"
   if stamp and not now_us then
      error("stamp needs LuaJIT's ffi, which this wrk's Lua lacks")
   end
   headers = {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. key,
   }
   counter = 0
   -- Counters read back by `done` through thread:get.
   sent_requests = 0
   sent_events = 0
   ok_requests = 0
   accepted_events = 0
   bad_status = 0
   bad_body = 0
   first_send_us = 0
   first_ok_us = 0
   last_ok_us = 0
   -- "<status> <body>" of the first few non-202 answers, newline-separated.
   bad_samples = ""
   bad_sampled = 0
end

local function one_event(now, tail)
   counter = counter + 1
   local c = counter
   return string.format(event_fmt, prefix, tid, c, tail, now, tid, c, c % 10000, c % 250 + 1,
                        c, c % 500, tid, c)
end

function request()
   local now = os.time()
   local tail = ""
   if stamp then
      local t = now_us()
      tail = string.format("-%d", t)
      if first_send_us == 0 then
         first_send_us = t
      end
   end
   local body
   if per_req == 1 then
      body = one_event(now, tail)
   else
      local parts = {}
      for i = 1, per_req do
         parts[i] = one_event(now, tail)
      end
      body = '{"events":[' .. table.concat(parts, ",") .. ']}'
   end
   sent_requests = sent_requests + 1
   sent_events = sent_events + per_req
   return wrk.format("POST", "/v1/events", headers, body)
end

function response(status, hdrs, body)
   if status ~= 202 then
      bad_status = bad_status + 1
      if bad_sampled < 3 then
         bad_sampled = bad_sampled + 1
         local b = string.gsub(string.sub(body or "", 1, 160), "[\r\n]", " ")
         bad_samples = bad_samples .. string.format("%d %s\n", status, b)
      end
      return
   end
   if stamp then
      last_ok_us = now_us()
      if first_ok_us == 0 then
         first_ok_us = last_ok_us
      end
   end
   local n = tonumber(string.match(body, '"accepted":(%d+)'))
   ok_requests = ok_requests + 1
   if n == nil or n ~= per_req then
      bad_body = bad_body + 1
   end
   if n ~= nil then
      accepted_events = accepted_events + n
   end
end

function done(summary, latency, requests)
   local t = { sent_requests = 0, sent_events = 0, ok_requests = 0,
               accepted_events = 0, bad_status = 0, bad_body = 0 }
   local first_send, first_ok, last_ok = 0, 0, 0
   local per_thread = {}
   for _, th in ipairs(threads) do
      for k, _ in pairs(t) do
         t[k] = t[k] + (th:get(k) or 0)
      end
      local fs, fo, lo = th:get("first_send_us") or 0, th:get("first_ok_us") or 0,
         th:get("last_ok_us") or 0
      if fs > 0 and (first_send == 0 or fs < first_send) then first_send = fs end
      if fo > 0 and (first_ok == 0 or fo < first_ok) then first_ok = fo end
      if lo > last_ok then last_ok = lo end
      table.insert(per_thread, string.format("%d=%d", th:get("tid"), th:get("sent_events") or 0))
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH duration_us=%d requests=%d bytes=%d err_connect=%d err_read=%d "
         .. "err_write=%d err_status=%d err_timeout=%d p50_us=%d p90_us=%d p99_us=%d "
         .. "max_us=%d mean_us=%d sent_requests=%d sent_events=%d ok_requests=%d "
         .. "accepted_events=%d bad_status=%d bad_body=%d first_send_us=%d "
         .. "first_ok_us=%d last_ok_us=%d\n",
      summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, latency.mean, t.sent_requests, t.sent_events,
      t.ok_requests, t.accepted_events, t.bad_status, t.bad_body, first_send, first_ok,
      last_ok))
   io.write("BENCHTHREADS " .. table.concat(per_thread, " ") .. "\n")
   for _, th in ipairs(threads) do
      for line in string.gmatch(th:get("bad_samples") or "", "[^\n]+") do
         io.write("BENCHERR " .. line .. "\n")
      end
   end
end
