#!/usr/bin/env python3
"""Instructions per KV read of one or more custos builds, counted by valgrind's callgrind.

Usage: scripts/bench_instructions.py target/release/custos [OTHER/custos ...] [--requests 1000]
       [--token root|policy|both]

Wall-clock throughput on a shared 2-core machine swings by 2x between rounds; instruction counts do
not. Each build serves a dev-mode (in-memory) server under callgrind; the script sends `--requests`
keep-alive `GET /v1/secret/data/bench/read` with the root token in one run and 100 in another, and
reports (count(N + 100) - count(100)) / N: the instructions one read costs, startup and shutdown
excluded. `--token policy` reads with a token whose only policy allows the secret through a
`+`/`*` rule (`path "secret/data/+/*"`), so the ACL check is counted too. Loopback only; every process started here is stopped before the script exits.
"""
import argparse
import http.client
import json
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


POLICY = '{"policy": "path \\"secret/data/+/*\\" {\\n  capabilities = [\\"read\\"]\\n}\\n"}'


def policy_token(client):
    """Writes the `bench` policy and creates a token that has only it (and `default`)."""
    client.request("PUT", "/v1/sys/policies/acl/bench", body=POLICY,
                   headers={"X-Vault-Token": "root", "Content-Type": "application/json"})
    response = client.getresponse()
    response.read()
    if response.status not in (200, 204):
        raise RuntimeError(f"policy write answered {response.status}")
    client.request("POST", "/v1/auth/token/create", body='{"policies": ["bench"]}',
                   headers={"X-Vault-Token": "root", "Content-Type": "application/json"})
    response = client.getresponse()
    return json.loads(response.read())["auth"]["client_token"]


def count(binary, reads, work, kind="root"):
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
        token = policy_token(client) if kind == "policy" else "root"
        for _ in range(reads):
            client.request("GET", "/v1/secret/data/bench/read", headers={"X-Vault-Token": token})
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
    parser.add_argument("--token", choices=["root", "policy", "both"], default="root")
    args = parser.parse_args()
    kinds = ["root", "policy"] if args.token == "both" else [args.token]
    print("| build | token | instructions per read |")
    print("| --- | --- | --- |")
    for binary in args.binaries:
        for kind in kinds:
            with tempfile.TemporaryDirectory(prefix="custos-callgrind-") as work:
                base = count(binary, 100, work, kind)
                total = count(binary, 100 + args.requests, work, kind)
            print(f"| {binary} | {kind} | {(total - base) / args.requests:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
