#!/usr/bin/env python3
"""KV v2 read throughput of two custos builds, side by side, in alternating rounds, with wrk.

Usage: scripts/bench_compare.py --before OLD/custos --after NEW/custos [--rounds 3] [--seconds 10]
       [--connections 64]

Answers "did this change make reads slower?" on a shared, noisy machine: both builds serve the same
dev-mode (in-memory) read of one 2-key secret, one after the other, round after round, so background
load hits both alike. Loopback only; every process started here is stopped before the script exits.
Prints one Markdown row per build and round, then the median of each build.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kv import call, free_port, start, stop, wait_until_up, wrk  # noqa: E402


def read_round(binary, seconds, connections, log):
    port = free_port()
    address = f"http://127.0.0.1:{port}"
    process = start([binary, "server", "--dev", "--dev-listen-address", f"127.0.0.1:{port}",
                     "--dev-root-token-id", "root"], log)
    try:
        wait_until_up(address)
        time.sleep(1)
        call("POST", f"{address}/v1/secret/data/bench/read", "root",
             {"data": {"user": "svc", "password": "0123456789abcdef0123456789abcdef"}})
        url = f"{address}/v1/secret/data/bench/read"
        wrk(url, "root", 2, connections)  # warm-up
        return wrk(url, "root", seconds, connections)
    finally:
        stop(process)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="custos-compare-")
    log = open(os.path.join(work, "servers.log"), "w")
    results = {"before": [], "after": []}
    print("| build | round | requests/s | p50 (ms) | p99 (ms) | non-2xx |")
    print("| --- | --- | --- | --- | --- | --- |")
    try:
        for round_number in range(1, args.rounds + 1):
            for name, binary in [("before", args.before), ("after", args.after)]:
                rps, p50, p99, errors = read_round(binary, args.seconds, args.connections, log)
                results[name].append(rps)
                print(f"| {name} | {round_number} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {errors} |",
                      flush=True)
    finally:
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    for name, values in results.items():
        print(f"median {name}: {statistics.median(values):,.0f} requests/s")


if __name__ == "__main__":
    main()
