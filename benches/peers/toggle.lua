-- wrk: every request a real change. Each thread walks its own slice of the ICCIDs in $IDS,
-- suspending each SIM on the first pass and unsuspending it on the next, so the simulator
-- does the same work as for `simbulk bench --mix toggle`.
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  ids = {}
  for line in io.lines(os.getenv("IDS")) do ids[#ids + 1] = line end
  local threads = tonumber(os.getenv("THREADS") or "2")
  count = math.floor(#ids / threads)
  first = tid * count
  i = 0
  headers = {
    ["Authorization"] = "Bearer " .. os.getenv("TOKEN"),
    ["Content-Type"] = "application/json",
  }
end

function request()
  local k = first + (i % count) + 1
  local suspend = math.floor(i / count) % 2 == 0
  i = i + 1
  local body = suspend and '{"customerSuspend":true}' or '{"customerSuspend":false}'
  return wrk.format("PATCH", "/api/v2/sim/" .. ids[k], headers, body)
end
