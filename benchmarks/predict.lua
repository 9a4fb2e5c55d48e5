-- wrk script for benchmarks/throughput.py: POST a prediction with a new id per request.
-- Arguments: the first id, the body with %ID% where the id goes, and the route.
-- Each thread records the ids answered 200 (echoed in X-Request-ID) and the statuses;
-- done() writes them to the file named by $WRK_REPORT.

local threads = {}

function setup(thread)
  thread:set("thread_number", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  first_id = tonumber(args[1]) + thread_number * 10000000
  sent = 0
  answered = {}
  statuses = {}
  template = args[2]
  path = args[3] or "/predict"
end

function request()
  sent = sent + 1
  local id = first_id + sent
  local body = template:gsub("%%ID%%", tostring(id))
  local headers = {["Content-Type"] = "application/json", ["X-Request-ID"] = tostring(id)}
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 then
    answered[#answered + 1] = headers["X-Request-ID"]
  end
end

function done(summary, latency, requests)
  local report = io.open(os.getenv("WRK_REPORT"), "w")
  report:write(string.format("requests %d\nseconds %f\n", summary.requests, summary.duration / 1e6))
  report:write(string.format("p50 %f\np99 %f\n", latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
  local e = summary.errors
  report:write(string.format("socket_errors %d\n", e.connect + e.read + e.write + e.timeout))
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      report:write(string.format("status %d %d\n", status, count))
    end
    for _, id in ipairs(thread:get("answered")) do
      report:write("id ", id, "\n")
    end
  end
  report:close()
end
