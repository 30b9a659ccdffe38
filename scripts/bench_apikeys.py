#!/usr/bin/env python3
"""API-key verification throughput and latency of custos, next to the machine's HTTP ceiling.

Usage: scripts/bench_apikeys.py [--custos PATH] [--ceiling PATH] [--seconds 10] [--connections 64]
       [--rounds 3] [--keys N] [--load-concurrency 32] [--seal-cycle] [--ceiling-only]

Without --custos and --ceiling it builds both in release mode first, with
CARGO_TARGET_DIR=/work/targets/release: the `custos` binary and the `bench_ceiling` example of
custos-server (`POST /verify` answered with a fixed `{"valid":true,"code":"VALID"}` through the
same listener, axum, hyper and tokio as custos, with no engine behind it).

custos runs in dev mode (in-memory storage, log level warn) with an `apikeys` engine at
`apikeys/`, a keyring `bench` and one key without limits, so every verify answers VALID.
With --keys N, N more keys are stored first through the API (concurrent requests on keep-alive
connections; the time taken is printed), and the server's resident memory (VmRSS) is read before
and after, as bytes per key: run it with --keys 1000 and --keys 1000000 to compare.
Each round runs wrk (scripts/wrk/verify.lua: `POST /v1/apikeys/verify` with the key and the
token) with --connections connections against custos and then the same against the ceiling
(alternating which goes first), after a 2-second warm-up of each.
With --seal-cycle the server is then sealed and unsealed once per round, and the time from the
unseal request to the first VALID verify (the key index being rebuilt) is reported.
--ceiling-only measures the ceiling alone (to check the harness without an apikeys engine).
Loopback only; every process started here is stopped before the script exits.
Prints Markdown tables: one row per target and round, the custos/ceiling ratios, memory, and
seal cycles.
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kv import call, stop  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LUA = os.path.join(HERE, "wrk", "verify.lua")
TARGET_DIR = "/work/targets/release"


def build():
    """Builds custos and bench_ceiling in release mode; answers their paths."""
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET_DIR)
    for command in (["cargo", "build", "--release", "-p", "custos", "--bin", "custos"],
                    ["cargo", "build", "--release", "-p", "custos-server", "--example", "bench_ceiling"]):
        print("+", " ".join(command), file=sys.stderr)
        subprocess.run(command, cwd=REPO, env=env, check=True)
    return (os.path.join(TARGET_DIR, "release", "custos"),
            os.path.join(TARGET_DIR, "release", "examples", "bench_ceiling"))


def start_reading(command, log, marker, fields=()):
    """Starts `command` and reads its standard output until the line starting with `marker`;
    answers the process, the rest of that line, and the values of the `fields` lines seen
    before it (such as `Unseal Key:`). The rest of its output goes to `log`."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                               text=True)
    found = {}
    deadline = time.time() + 60
    for line in process.stdout:
        line = line.rstrip("\n")
        for field in fields:
            if line.startswith(field):
                found[field] = line[len(field):].strip()
        if line.startswith(marker):
            rest = line[len(marker):].strip()
            # Keep draining its output so it never blocks on a full pipe.
            threading.Thread(target=lambda: [log.write(line) for line in process.stdout], daemon=True).start()
            return process, rest, found
        if time.time() > deadline:
            break
    stop(process)
    raise RuntimeError(f"{command[0]} did not start (see the log)")


def wrk(url, key, token, path, seconds, connections):
    env = dict(os.environ, BENCH_KEY=key, BENCH_TOKEN=token, BENCH_PATH=path)
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", LUA, url]
    output = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))

    def percentile(p):
        match = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", output)
        value, unit = float(match.group(1)), match.group(2)
        return value * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    not_valid = re.search(r"Not valid: (\d+)", output)
    return rps, percentile(50), percentile(99), int(not_valid.group(1)) if not_valid else -1


def rss(pid):
    """The process's resident memory in bytes (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def load_keys(address, token, count, concurrency):
    """Stores `count` keys in keyring `bench`, `concurrency` requests at a time, each worker on
    its own keep-alive connection; answers the seconds it took."""
    host, port = address.removeprefix("http://").rsplit(":", 1)
    local = threading.local()
    body = json.dumps({"owner_id": "bulk"})
    headers = {"X-Vault-Token": token, "Content-Type": "application/json"}

    def create(_):
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(host, int(port), timeout=60)
        local.connection.request("POST", "/v1/apikeys/keyrings/bench/keys", body, headers)
        response = local.connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"key creation answered {response.status}")

    started = time.time()
    batch = 10_000
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        for first in range(0, count, batch):
            list(pool.map(create, range(first, min(first + batch, count))))
            done = min(first + batch, count)
            elapsed = time.time() - started
            print(f"  {done:,} keys stored in {elapsed:,.1f} s ({done / elapsed:,.0f}/s)", file=sys.stderr)
    return time.time() - started


def verify_code(address, token, key):
    try:
        answer = call("POST", f"{address}/v1/apikeys/verify", token, {"key": key})
        return answer["data"]["code"]
    except Exception as error:  # sealed: 503, still unsealing, connection refused...
        return type(error).__name__


def seal_cycle(address, token, unseal_key, key):
    """Seals, unseals, and polls verify; answers the seconds from the unseal request to the first
    VALID answer, and how many polls it took."""
    call("PUT", f"{address}/v1/sys/seal", token)
    started = time.time()
    call("PUT", f"{address}/v1/sys/unseal", body={"key": unseal_key})
    polls = 0
    while True:
        polls += 1
        if verify_code(address, token, key) == "VALID":
            return time.time() - started, polls
        if time.time() - started > 600:
            raise RuntimeError("no VALID verify within 10 minutes of unsealing")
        time.sleep(0.002)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--custos")
    parser.add_argument("--ceiling")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", type=int, default=0)
    parser.add_argument("--load-concurrency", type=int, default=32)
    parser.add_argument("--seal-cycle", action="store_true")
    parser.add_argument("--ceiling-only", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    custos_binary, ceiling_binary = args.custos, args.ceiling
    if ceiling_binary is None or (custos_binary is None and not args.ceiling_only):
        built_custos, built_ceiling = build()
        custos_binary = custos_binary or built_custos
        ceiling_binary = ceiling_binary or built_ceiling

    top = tempfile.mkdtemp(prefix="custos-bench-apikeys-")
    log = open(os.path.join(top, "servers.log"), "w")
    processes = []
    rows, memory, cycles = [], [], []
    try:
        ceiling, ceiling_address, _ = start_reading(
            [ceiling_binary, "--addr", "127.0.0.1:0"], log, "bench_ceiling: listening on")
        processes.append(ceiling)
        targets = [("ceiling", ceiling_address, "/verify", "", "not-a-real-key")]
        if not args.ceiling_only:
            server, address, found = start_reading(
                [custos_binary, "server", "--dev", "--dev-listen-address", "127.0.0.1:0",
                 "--dev-root-token-id", "root", "--log-level", "warn"],
                log, "custos: listening on", fields=("Unseal Key:",))
            processes.append(server)
            token = "root"
            call("POST", f"{address}/v1/sys/mounts/apikeys", token, {"type": "apikeys"})
            call("POST", f"{address}/v1/apikeys/keyrings/bench", token, {"prefix": "bench_live"})
            key = call("POST", f"{address}/v1/apikeys/keyrings/bench/keys", token,
                       {"name": "measured"})["data"]["key"]
            if args.keys:
                before = rss(server.pid)
                print(f"storing {args.keys:,} keys, {args.load_concurrency} at a time", file=sys.stderr)
                seconds = load_keys(address, token, args.keys, args.load_concurrency)
                after = rss(server.pid)
                memory.append((args.keys, seconds, before, after))
            targets.append(("custos", address, "/v1/apikeys/verify", token, key))
            if verify_code(address, token, key) != "VALID":
                raise RuntimeError("the measured key does not verify as VALID")

        for round_number in range(1, args.rounds + 1):
            order = targets if round_number % 2 else list(reversed(targets))
            for name, address, path, token, key in order:
                wrk(address, key, token, path, 2, args.connections)  # warm-up
                rps, p50, p99, not_valid = wrk(address, key, token, path, args.seconds, args.connections)
                rows.append((name, round_number, rps, p50, p99, not_valid))
            if args.seal_cycle and not args.ceiling_only:
                _, address, _, token, key = targets[-1]
                seconds, polls = seal_cycle(address, token, found["Unseal Key:"], key)
                cycles.append((round_number, seconds, polls))
    finally:
        for process in processes:
            stop(process)
        log.close()
        shutil.rmtree(top, ignore_errors=True)

    keys = 1 + args.keys
    print(f"verify, {args.connections} connections, {args.seconds} s per run, "
          f"{'no custos' if args.ceiling_only else f'{keys:,} keys stored'}")
    print()
    print("| target | round | requests/s | p50 (ms) | p99 (ms) | not VALID |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, round_number, rps, p50, p99, not_valid in rows:
        print(f"| {name} | {round_number} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {not_valid} |")
    by_round = {}
    for name, round_number, rps, p50, p99, _ in rows:
        by_round.setdefault(round_number, {})[name] = (rps, p50, p99)
    ratios = [(number, runs["custos"], runs["ceiling"]) for number, runs in sorted(by_round.items())
              if "custos" in runs and "ceiling" in runs]
    if ratios:
        print()
        print("| round | custos/ceiling requests/s | custos/ceiling p50 | custos/ceiling p99 |")
        print("| --- | --- | --- | --- |")
        for number, custos, ceiling in ratios:
            print(f"| {number} | {custos[0] / ceiling[0]:.2f} | {custos[1] / ceiling[1]:.2f} | "
                  f"{custos[2] / ceiling[2]:.2f} |")
        median = statistics.median(custos[0] / ceiling[0] for _, custos, ceiling in ratios)
        print(f"| median | {median:.2f} | | |")
    if memory:
        print()
        print("| keys stored | seconds | keys/s | RSS before | RSS after | bytes/key |")
        print("| --- | --- | --- | --- | --- | --- |")
        for count, seconds, before, after in memory:
            print(f"| {count:,} | {seconds:,.1f} | {count / seconds:,.0f} | {before / 2**20:,.1f} MiB | "
                  f"{after / 2**20:,.1f} MiB | {(after - before) / count:,.0f} |")
    if cycles:
        print()
        print(f"| round | unseal to first VALID verify ({keys:,} keys) | polls |")
        print("| --- | --- | --- |")
        for number, seconds, polls in cycles:
            print(f"| {number} | {seconds * 1000:,.1f} ms | {polls} |")


if __name__ == "__main__":
    main()
