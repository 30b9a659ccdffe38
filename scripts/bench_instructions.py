#!/usr/bin/env python3
"""Instructions per KV read of one or more custos builds, counted by valgrind's callgrind.

Usage: scripts/bench_instructions.py target/release/custos [OTHER/custos ...] [--requests 1000]

Wall-clock throughput on a shared 2-core machine swings by 2x between rounds; instruction counts do
not. Each build serves a dev-mode (in-memory) server under callgrind; the script sends `--requests`
keep-alive `GET /v1/secret/data/bench/read` with the root token in one run and 100 in another, and
reports (count(N + 100) - count(100)) / N: the instructions one read costs, startup and shutdown
excluded. Loopback only; every process started here is stopped before the script exits.
"""
import argparse
import http.client
import os
import re
import signal
import socket
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def count(binary, reads, work):
    port = free_port()
    out = os.path.join(work, f"callgrind.{reads}.out")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "server", "--dev",
         "--dev-listen-address", f"127.0.0.1:{port}", "--dev-root-token-id", "root", "--log-level", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while True:
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                probe.request("GET", "/v1/sys/health")
                probe.getresponse().read()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        client.request("POST", "/v1/secret/data/bench/read",
                       body='{"data":{"user":"svc","password":"0123456789abcdef0123456789abcdef"}}',
                       headers={"X-Vault-Token": "root", "Content-Type": "application/json"})
        client.getresponse().read()
        for _ in range(reads):
            client.request("GET", "/v1/secret/data/bench/read", headers={"X-Vault-Token": "root"})
            response = client.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"read answered {response.status}")
        client.close()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=120)
    with open(out) as f:
        text = f.read()
    total = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    return int(total.group(1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binaries", nargs="+")
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    print("| build | instructions per read |")
    print("| --- | --- |")
    for binary in args.binaries:
        with tempfile.TemporaryDirectory(prefix="custos-callgrind-") as work:
            base = count(binary, 100, work)
            total = count(binary, 100 + args.requests, work)
        print(f"| {binary} | {(total - base) / args.requests:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
