-- The shared budget of one account, in Redis: the same steps as src/quota/state.rs, run
-- atomically. KEYS[1]: the account's state (JSON). ARGV: op (reserve | throttled | release),
-- job id, host, pid, weight, rate, burst, retry_after (seconds, -1: none), account label, and
-- (tests only) the time to take as now, in seconds (else the server's clock).
-- Returns {wait in µs, share in millionths, rate in thousandths, jobs, rate cut in thousandths
-- (0: none), a cut in force (1) or not (0), the smallest rate a live job asked in thousandths}.
local LEASE = 3.0
local now
if ARGV[10] and ARGV[10] ~= '' then
  now = tonumber(ARGV[10])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local op, id = ARGV[1], ARGV[2]
local weight, rate, burst = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local raw = redis.call('GET', KEYS[1])
local s = raw and cjson.decode(raw) or {}
s.account = ARGV[9]
s.rate = tonumber(s.rate) or 0
s.burst = tonumber(s.burst) or 0
s.tat = tonumber(s.tat) or 0
s.cut_rate = tonumber(s.cut_rate) or 0
s.cut_at = tonumber(s.cut_at) or 0
s.paused_until = tonumber(s.paused_until) or 0
if type(s.jobs) ~= 'table' then s.jobs = {} end

local function effective()
  if s.cut_rate <= 0 then return s.rate end
  return math.min(s.rate, s.cut_rate + 0.05 * s.rate * math.max(now - s.cut_at, 0))
end

local function save()
  local n = 0
  for _ in pairs(s.jobs) do n = n + 1 end
  if n == 0 then s.jobs = cjson.decode('{}') end
  redis.call('SET', KEYS[1], cjson.encode(s), 'EX', 86400)
end

if op == 'release' then
  s.jobs[id] = nil
  save()
  return {0, 0, 0, 0, 0}
end

-- Renew: drop lapsed leases (the last one gone, start afresh), renew this one; the smallest
-- rate and burst of the live jobs win.
local live = 0
for k, l in pairs(s.jobs) do
  if tonumber(l.expires) < now then s.jobs[k] = nil else live = live + 1 end
end
if live == 0 then
  s.rate, s.burst, s.tat, s.cut_rate, s.cut_at = 0, 0, 0, 0, 0
end
local me = s.jobs[id]
if not me then
  me = {host = ARGV[3], pid = tonumber(ARGV[4]), weight = weight, expires = now, tat = now,
        calls = 0, throttled = 0, asked = rate, asked_burst = burst, waited_at = 0}
  s.jobs[id] = me
end
me.expires = now + LEASE
me.weight = weight
me.pid = tonumber(ARGV[4])
me.asked = rate
me.asked_burst = burst
s.rate, s.burst = math.huge, burst
for _, l in pairs(s.jobs) do
  local a, b = tonumber(l.asked) or 0, tonumber(l.asked_burst) or 0
  if a > 0 and a < s.rate then s.rate = a end
  if b > 0 and b < s.burst then s.burst = b end
end
if s.cut_rate > 0 and effective() >= s.rate then s.cut_rate = 0 end

local cut = 0
if op == 'throttled' then
  me.throttled = me.throttled + 1
  local ra = tonumber(ARGV[8])
  if ra >= 0 then s.paused_until = math.max(s.paused_until, now + math.min(ra, 300)) end
  if not (now - s.cut_at < 1 and s.cut_rate > 0) then
    s.cut_rate = math.max(effective() * 0.7, s.rate * 0.02)
    s.cut_at = now
    cut = s.cut_rate
  end
  save()
  return {0, 0, math.floor(effective() * 1000), 0, math.floor(cut * 1000), 0, 0}
end

-- Reserve.
local r = math.max(effective(), 1e-6)
-- Shares among the jobs that use theirs (a job none of whose calls waited for its own share
-- for a second lends it until one waits again).
local LEND_AFTER = 1.0
local total, jobs = 0, 0
for k, l in pairs(s.jobs) do
  if k == id or now - (tonumber(l.waited_at) or 0) <= LEND_AFTER then
    total = total + tonumber(l.weight)
  end
  jobs = jobs + 1
end
local share = math.min(math.max(weight / math.max(total, 1e-9), 0), 1)
local job_rate = math.max(r * share, 1e-6)
local job_burst = math.max(s.burst * share, 1)
local own = me.tat - (job_burst - 1) / job_rate
local at = math.max(now, s.paused_until, own, s.tat - math.max(s.burst - 1, 0) / r)
me.tat = math.max(me.tat, at) + 1 / job_rate
s.tat = math.max(s.tat, at) + 1 / r
-- Its own share held it back: it uses its share.
if own > now then me.waited_at = now end
me.calls = me.calls + 1
local cut_now = 0
if s.cut_rate > 0 then cut_now = 1 end
save()
return {math.floor((at - now) * 1e6), math.floor(share * 1e6),
  math.floor(r * 1000), jobs, 0, cut_now, math.floor(s.rate * 1000)}
