-- wrk script of scripts/bench_apikeys.py: POST a verify request with one key, over and over.
-- Set by the environment: BENCH_KEY (the key), BENCH_TOKEN (the X-Vault-Token), BENCH_PATH
-- (default /v1/apikeys/verify). At the end it prints how many answers were not a 200 saying
-- "valid": true, so a run that measured refusals is noticed.

local key = os.getenv("BENCH_KEY") or error("BENCH_KEY is not set")
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH") or "/v1/apikeys/verify"
wrk.body = '{"key":"' .. key .. '"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Vault-Token"] = os.getenv("BENCH_TOKEN") or ""

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  not_valid = 0
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"valid"%s*:%s*true') then
    not_valid = not_valid + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("not_valid")
  end
  io.write(string.format("Not valid: %d\n", total))
end
