#!/usr/bin/env python3
"""Several custos nodes on one PostgreSQL: propagation time between nodes, and KV read throughput.

Usage: scripts/bench_ha.py --custos target/release/custos
           [--postgres postgres://postgres@127.0.0.1:5432/postgres] [--rounds 200]
           [--seconds 10] [--connections 64]

Creates a fresh database (with psql), starts two nodes on it (plain HTTP on loopback),
initialises through the first and unseals both, then measures:
- propagation of a mount change: enable a KV v2 mount on node A, then poll node B (one request at
  a time, no pause) until the mount serves a request; `--rounds` times; median and worst;
- propagation of a KV write: write a new value on A, poll B until it reads that value;
- KV v2 read throughput (wrk, `--connections` connections, GET of one secret) of one node alone,
  then of both nodes together (one wrk per node at the same time, requests/s summed).
Every process started here is stopped and the database dropped before the script exits.
"""
import argparse
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
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kv import free_port, wait_until_up  # noqa: E402


def call(method, url, token=None, body=None):
    """Returns (status, json or None) whatever the status."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("X-Vault-Token", token)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return response.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, None


def psql(admin_url, sql):
    subprocess.run(["psql", admin_url, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True,
                   stdout=subprocess.DEVNULL)


def database_url(admin_url, name):
    base, _, query = admin_url.partition("?")
    scheme, _, rest = base.partition("://")
    authority = rest.split("/", 1)[0]
    url = f"{scheme}://{authority}/{name}"
    return f"{url}?{query}" if query else url


def wrk(url, token, seconds, connections):
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
               "-H", f"X-Vault-Token: {token}", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))

    def percentile(p):
        match = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", output)
        value, unit = float(match.group(1)), match.group(2)
        return value * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return rps, percentile(50), percentile(99), int(errors.group(1)) if errors else 0


def propagation(rounds, change, visible):
    """Runs change(i) on node A, then polls visible(i) on node B; returns times in ms."""
    times = []
    for i in range(rounds):
        change(i)
        started = time.perf_counter()
        while not visible(i):
            if time.perf_counter() - started > 10:
                raise RuntimeError(f"round {i}: not visible after 10 s")
        times.append((time.perf_counter() - started) * 1000)
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--custos", required=True)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="custos-bench-ha-")
    log = open(os.path.join(work, "servers.log"), "w")
    name = f"custos_bench_ha_{os.getpid()}"
    psql(args.postgres, f"CREATE DATABASE {name}")
    processes = []
    try:
        addresses = []
        for node in range(2):
            port = free_port()
            config = os.path.join(work, f"node{node}.toml")
            with open(config, "w") as f:
                f.write(f'version = 1\n[listener]\naddress = "127.0.0.1:{port}"\ntls_disable = true\n'
                        f'[storage]\nbackend = "postgres"\nurl = "{database_url(args.postgres, name)}"\n'
                        f'[log]\nlevel = "warn"\n')
            processes.append(subprocess.Popen([args.custos, "server", "--config", config],
                                              stdout=log, stderr=log, stdin=subprocess.DEVNULL))
            addresses.append(f"http://127.0.0.1:{port}")
        for address in addresses:
            wait_until_up(address)
        a, b = addresses
        _, init = call("PUT", f"{a}/v1/sys/init", body={"secret_shares": 1, "secret_threshold": 1})
        token = init["root_token"]
        for address in addresses:
            call("PUT", f"{address}/v1/sys/unseal", body={"key": init["keys"][0]})

        def enable(i):
            status, body = call("POST", f"{a}/v1/sys/mounts/m{i}", token,
                                {"type": "kv", "options": {"version": "2"}})
            assert status == 204, body

        def mounted(i):
            status, body = call("GET", f"{b}/v1/m{i}/data/none", token)
            return status == 404 and not (body and body.get("errors"))

        mount_times = propagation(args.rounds, enable, mounted)

        def write(i):
            status, body = call("POST", f"{a}/v1/m0/data/shared", token, {"data": {"value": str(i)}})
            assert status == 200, body

        def read(i):
            status, body = call("GET", f"{b}/v1/m0/data/shared", token)
            return status == 200 and body["data"]["data"]["value"] == str(i)

        kv_times = propagation(args.rounds, write, read)

        status, body = call("POST", f"{a}/v1/m0/data/bench/read", token,
                            {"data": {"user": "svc", "password": "0123456789abcdef0123456789abcdef"}})
        assert status == 200, body
        path = "/v1/m0/data/bench/read"
        wrk(f"{a}{path}", token, 2, args.connections)  # warm-up (and fills A's cache)
        wrk(f"{b}{path}", token, 2, args.connections)
        single = wrk(f"{a}{path}", token, args.seconds, args.connections)
        results = [None, None]

        def run(index, address):
            results[index] = wrk(f"{address}{path}", token, args.seconds, args.connections)

        threads = [threading.Thread(target=run, args=(i, address)) for i, address in enumerate(addresses)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
        psql(args.postgres, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    print(f"| change seen on the other node ({args.rounds} rounds) | median (ms) | worst (ms) |")
    print("| --- | --- | --- |")
    for label, times in [("mount enabled", mount_times), ("KV v2 write", kv_times)]:
        print(f"| {label} | {statistics.median(times):.1f} | {max(times):.1f} |")
    print()
    print("| nodes | requests/s | p50 (ms) | p99 (ms) | non-2xx |")
    print("| --- | --- | --- | --- | --- |")
    rps, p50, p99, errors = single
    print(f"| 1 | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {errors} |")
    total = sum(result[0] for result in results)
    p50s = "/".join(f"{result[1]:.2f}" for result in results)
    p99s = "/".join(f"{result[2]:.2f}" for result in results)
    errors = sum(result[3] for result in results)
    print(f"| 2 (together) | {total:,.0f} | {p50s} | {p99s} | {errors} |")


if __name__ == "__main__":
    main()
