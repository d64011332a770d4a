-- One wrk script for every call the benchmark makes.
--
-- Arguments (after `--` on the wrk command line):
--   call        get | list | create | create_keyed | patch | claim | mixed
--   api_key     sent as "Authorization: Bearer <api_key>"
--   project_id  project of the listed / created tasks
--   ids_path    file with one seeded task id per line (get, patch, mixed)
--   workers     comma-separated worker ids (claim: round robin over them; create: assignee)
--   stop_after  0, or stop sending after that many responses (memory runs; one thread)
--
-- Each thread counts response classes in response(); done() sums the threads and prints one
-- JSON line, prefixed with BENCH_RESULT, that bench/wrk.py parses. Latency figures are wrk's
-- own (microseconds), over every request, including the non-2xx ones.
--
-- wrk always runs for its whole --duration (its main thread sleeps it out; thread:stop()
-- does not end the run). So a count-limited run stops *sending*: after stop_after responses,
-- delay() holds every connection back, the script prints BENCH_STOPPED, and bench/wrk.py
-- sends wrk SIGINT, on which wrk ends the run and prints its summary as usual.

local threads = {}
local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("thread_number", thread_count)
   table.insert(threads, thread)
end

local function split(text, separator)
   local parts = {}
   for part in string.gmatch(text, "([^" .. separator .. "]+)") do
      table.insert(parts, part)
   end
   return parts
end

function init(args)
   call = args[1]
   project_id = args[3]
   ids = {}
   if args[4] ~= nil and args[4] ~= "" and args[4] ~= "-" then
      for line in io.lines(args[4]) do
         if line ~= "" then table.insert(ids, line) end
      end
   end
   workers = split(args[5] or "", ",")
   stop_after = tonumber(args[6] or "0")
   headers = {}
   headers["Authorization"] = "Bearer " .. args[2]
   headers["Content-Type"] = "application/json"
   math.randomseed(os.time() * 1000 + (thread_number or 0))
   -- create_keyed: every request its own Idempotency-Key (the cost of a first attempt),
   -- unique across threads and runs.
   key_prefix = string.format("bench-%d-%d-%d", os.time(), thread_number or 0,
                              math.random(1, 1000000000))
   sequence = 0
   responses = 0
   status_2xx = 0
   status_200 = 0
   status_204 = 0
   status_other = 0
   first_bad_status = 0
   stopping = false
end

local statuses = { "in_progress", "pending", "done", "pending" }

local function random_id()
   return ids[math.random(#ids)]
end

local function create_body()
   local assignee = workers[(sequence % #workers) + 1]
   return string.format(
      '{"project_id": %s, "title": "benchmark task %d", "description": "created by wrk",'
         .. ' "priority": %d, "assignee_id": %s}',
      project_id, sequence, sequence % 5, assignee)
end

local function request_for(kind)
   if kind == "get" then
      return wrk.format("GET", "/api/v1/tasks/" .. random_id(), headers)
   elseif kind == "list" then
      return wrk.format("GET", "/api/v1/tasks?project_id=" .. project_id .. "&limit=20", headers)
   elseif kind == "create" then
      return wrk.format("POST", "/api/v1/tasks", headers, create_body())
   elseif kind == "create_keyed" then
      -- The same create, plus its own key.
      local body = create_body()
      local keyed = {}
      for name, value in pairs(headers) do keyed[name] = value end
      keyed["Idempotency-Key"] = string.format('"%s-%d"', key_prefix, sequence)
      return wrk.format("POST", "/api/v1/tasks", keyed, body)
   elseif kind == "patch" then
      local body = '{"status": "' .. statuses[(sequence % #statuses) + 1] .. '"}'
      return wrk.format("PATCH", "/api/v1/tasks/" .. random_id(), headers, body)
   elseif kind == "claim" then
      local worker = workers[(sequence % #workers) + 1]
      local body = '{"worker_id": ' .. worker .. ', "lease_seconds": 600}'
      return wrk.format("POST", "/api/v1/tasks/claim", headers, body)
   end
   error("unknown call " .. tostring(kind))
end

local mixed = { "get", "list", "create", "patch" }

function request()
   sequence = sequence + 1
   if call == "mixed" then
      return request_for(mixed[(sequence % #mixed) + 1])
   end
   return request_for(call)
end

function response(status, headers, body)
   responses = responses + 1
   if status >= 200 and status < 300 then
      status_2xx = status_2xx + 1
      if status == 200 then status_200 = status_200 + 1 end
      if status == 204 then status_204 = status_204 + 1 end
   else
      status_other = status_other + 1
      if first_bad_status == 0 then first_bad_status = status end
   end
   if stop_after > 0 and responses >= stop_after and not stopping then
      stopping = true
      io.write("BENCH_STOPPED\n")
      io.stdout:flush()
   end
end

function delay()
   if stopping then return 3600000 end
   return 0
end

function done(summary, latency, requests)
   local totals = { responses = 0, status_2xx = 0, status_200 = 0, status_204 = 0,
                    status_other = 0 }
   local first_bad = 0
   for _, thread in ipairs(threads) do
      for name, _ in pairs(totals) do
         totals[name] = totals[name] + (thread:get(name) or 0)
      end
      local bad = thread:get("first_bad_status") or 0
      if first_bad == 0 and bad ~= 0 then first_bad = bad end
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"duration_us": %d, "requests": %d, "responses": %d, "status_2xx": %d,'
         .. ' "status_200": %d, "status_204": %d, "non_2xx": %d, "first_bad_status": %d,'
         .. ' "socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d},'
         .. ' "latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
      summary.duration, summary.requests, totals.responses, totals.status_2xx,
      totals.status_200, totals.status_204, totals.status_other, first_bad,
      errors.connect, errors.read, errors.write, errors.timeout,
      latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max))
end
