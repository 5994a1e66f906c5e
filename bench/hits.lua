-- wrk script: rotates realistic hit bodies, cookies, user agents and client IPs.
--
-- Configured by the environment (bench/run.py sets it):
--   BENCH_DATA  the Lua data file bench/workload.py wrote (bodies, cookies, agents, IPs)
--   BENCH_RATE  requests per second for the whole run; 0 or unset = as fast as possible
--               (closed loop at wrk's -c connections). With a rate, each thread keeps its
--               share on a fixed schedule (open loop, without wrk2's latency correction).
--   BENCH_TID_BASE  added to the thread numbers in message ids, so that several wrk processes
--               driving one cluster never write the same id (default 0)
--   BENCH_QUANTILES  comma-separated percentiles: done() adds their latencies ("quantiles"),
--               so that the harness can merge the distributions of several wrk processes
--   BENCH_RANDOM_IDS  "1": message ids start with 16 random hex digits, as the tag's UUIDs do
--               (bench.run --random-ids); otherwise they grow with time
--
-- Each body's message id is "b<send time in microseconds>-<thread>-<n>" (after "r<random>."
-- with BENCH_RANDOM_IDS), written just before the request is sent: the TikTok double reads it
-- back from the event_id to time the trip.
-- done() prints one line "BENCH_JSON {...}" with the counts and latency percentiles.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]]
local tv = ffi.new("bench_timeval")
local function now_us()
    ffi.C.gettimeofday(tv, nil)
    return tonumber(tv.tv_sec) * 1000000 + tonumber(tv.tv_usec)
end

local data = dofile(os.getenv("BENCH_DATA"))
local rate = tonumber(os.getenv("BENCH_RATE") or "0") or 0
local threads_total = tonumber(os.getenv("BENCH_THREADS") or "1") or 1
local tid_base = tonumber(os.getenv("BENCH_TID_BASE") or "0") or 0
local random_ids = os.getenv("BENCH_RANDOM_IDS") == "1"
local quantiles = {}
for p in string.gmatch(os.getenv("BENCH_QUANTILES") or "", "[^,]+") do
    quantiles[#quantiles + 1] = tonumber(p)
end

local thread_count = 0
function setup(thread)
    thread_count = thread_count + 1
    thread:set("tid", tid_base + thread_count)
end

local n = 0
local next_at = nil
local interval_us = 0
local bodies, cookies, agents, ips = data.bodies, data.cookies, data.agents, data.ips
local nb, nc, na, ni = #bodies, #cookies, #agents, #ips

function init(args)
    math.randomseed(now_us() + (tid or 0))
    if rate > 0 then
        interval_us = 1000000 * threads_total / rate
    end
end

if rate > 0 then
    function delay()
        local now = now_us()
        if next_at == nil then
            next_at = now
        end
        next_at = next_at + interval_us
        local wait = next_at - now
        if wait < -1000000 then
            -- More than a second behind: the server cannot keep up; do not burst to catch up.
            next_at = now
            return 0
        end
        if wait <= 0 then
            return 0
        end
        return wait / 1000
    end
end

function request()
    n = n + 1
    local b = bodies[n % nb + 1]
    local body
    if b.post then
        -- %.0f: a plain integer (LuaJIT would print a double of this size as 1.7e+15).
        local mid = string.format("b%.0f-%d-%d", now_us(), tid or 0, n)
        if random_ids then
            local high, low = math.random(0, 0x7fffffff), math.random(0, 0x7fffffff)
            mid = string.format("r%08x%08x.", high, low) .. mid
        end
        body = b.pre .. mid .. b.post
    else
        body = b.pre
    end
    local headers = {
        ["Content-Type"] = b.ctype,
        ["Origin"] = data.origin,
        ["User-Agent"] = agents[n % na + 1],
        ["X-Forwarded-For"] = ips[n % ni + 1],
        ["X-Forwarded-Proto"] = "https",
    }
    local cookie = cookies[n % nc + 1]
    if cookie ~= "" then
        headers["Cookie"] = cookie
    end
    return wrk.format("POST", b.path, headers, body)
end

function done(summary, latency, requests)
    local e = summary.errors
    local tail = ""
    if #quantiles > 0 then
        local values = {}
        for i, p in ipairs(quantiles) do
            values[i] = string.format("%d", latency:percentile(p))
        end
        tail = ',"quantiles":[' .. table.concat(values, ",") .. "]"
    end
    io.write(string.format(
        'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
        '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
        '"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p99_9":%d}%s}\n',
        summary.requests, summary.duration, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency.mean, latency.stdev, latency.max,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), tail))
end
