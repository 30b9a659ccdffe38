#!/usr/bin/env python3
"""Start-to-healthy time and idle memory of custos and OpenBao dev servers, side by side.

Usage: scripts/bench_server.py --custos target/release/custos [--bao PATH/TO/bao] [--runs 10]

For each server and run: spawn the dev server on a free loopback port, poll GET /v1/sys/health
every millisecond until it answers 200, record the time since spawn; after the last run, let one
server idle for 3 seconds and read its resident set size from /proc. Prints a Markdown table.
Loopback only; every process is stopped before the script exits.
"""
import argparse
import http.client
import socket
import statistics
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
        conn.request("GET", "/v1/sys/health")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def command(kind, binary, port):
    if kind == "custos":
        return [binary, "server", "--dev", "--dev-listen-address", f"127.0.0.1:{port}",
                "--dev-root-token-id", "root"]
    return [binary, "server", "-dev", "-dev-root-token-id=root",
            f"-dev-listen-address=127.0.0.1:{port}"]


def measure(kind, binary, runs):
    times = []
    rss = 0
    for run in range(runs):
        port = free_port()
        start = time.perf_counter()
        proc = subprocess.Popen(command(kind, binary, port), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = start + 30
            while not healthy(port):
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{kind} did not become healthy")
                time.sleep(0.001)
            times.append((time.perf_counter() - start) * 1000)
            if run == runs - 1:
                time.sleep(3)
                rss = rss_kib(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return times, rss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--custos", required=True)
    parser.add_argument("--bao")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    rows = [("custos", args.custos)] + ([("openbao", args.bao)] if args.bao else [])
    print("| server | start-to-healthy median (ms) | min | max | idle RSS (MiB) |")
    print("| --- | --- | --- | --- | --- |")
    for kind, binary in rows:
        times, rss = measure(kind, binary, args.runs)
        print(f"| {kind} | {statistics.median(times):.1f} | {min(times):.1f} | {max(times):.1f} "
              f"| {rss / 1024:.1f} |")


if __name__ == "__main__":
    main()
