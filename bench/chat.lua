-- wrk script (adapted from ../shared/bench/chat.lua): POST an OpenAI chat completion with a bearer key
-- (BENCH_KEY, BENCH_MODEL from the environment); prints one RESULT line that bench/load.py parses.
-- Every request's user message is unique (" (request <serial>)", the serial in letters, never repeating across
-- runs): the gateway remembers the content policies' findings for texts it saw lately, and a fixed body would be
-- scanned once. Letters, not digits: a long digit run would send every request through the PII checks for phone
-- numbers and the injection check for leetspeak, which the fixed prompt never did.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "sk-bench")
local head = '{"model":"' .. (os.getenv("BENCH_MODEL") or "gpt-4o-mini") .. '","messages":[{"role":"system",'
  .. '"content":"You are a concise assistant."},{"role":"user","content":"Summarise the plot of Hamlet in two '
  .. 'sentences, please. (request '
local tail = ')"}],"max_tokens":64}'
local serial = (os.time() % 100000) * 100000  -- runs start seconds apart, each well under 100,000 requests a second

local function letters(n)
  local out = ""
  repeat
    local digit = n % 26
    out = string.char(97 + digit) .. out
    n = (n - digit) / 26
  until n == 0
  return out
end

request = function()
  serial = serial + 1
  return wrk.format(nil, nil, nil, head .. letters(serial) .. tail)
end
done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f mean_ms=%.3f errors=%d non2xx=%d requests=%d duration_s=%.3f\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.requests, summary.duration / 1e6))
end
