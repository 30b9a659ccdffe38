#!/usr/bin/env python3
"""KV v2 reads and durable writes with one `file` audit device, custos and OpenBao side by side.

Usage: scripts/bench_audit.py --custos target/release/custos --bao PATH/TO/bao [--seconds 10]
       [--connections 64] [--rounds 1]

Every server stores durably (custos: a SQLite file; OpenBao: integrated raft storage), is
initialised with one key share and unsealed, and has one `file` audit device declared in its
configuration file (custos: `[[audit]]`, default fsync policy `batched`; OpenBao: an `audit`
stanza). A KV v2 engine at `secret/`, an ACL policy `bench` that allows reading and writing
`secret/data/bench/*` and a token with only that policy: every measured request is a
non-root, policy-checked request. custos is also measured with no audit device, to give the
cost of audit on its own throughput.
Measured per server and round, `--connections` keep-alive connections:
- KV v2 read of one secret;
- KV v2 write to 10,000 distinct secrets (durable: acknowledged after the commit).
Loopback only; every process started here is stopped before the script exits.
Prints one Markdown row per server, operation and round, and the audit log sizes.
"""
import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kv import WRITE_LUA, call, free_port, init_unseal, start, stop, wait_until_up, wrk  # noqa: E402

POLICY = 'path "secret/data/bench/*" {\n  capabilities = ["create", "read", "update"]\n}\n'


def custos_config(work, port, audit):
    config = os.path.join(work, "custos.toml")
    with open(config, "w") as f:
        f.write(f'version = 1\n[listener]\naddress = "127.0.0.1:{port}"\ntls_disable = true\n'
                f'[storage]\nbackend = "sqlite"\npath = "{work}/custos.db"\n[log]\nlevel = "warn"\n')
        if audit:
            f.write(f'[[audit]]\npath = "file"\ntype = "file"\nfile_path = "{work}/audit.log"\n')
    return config


def bao_config(work, port, cluster_port):
    config = os.path.join(work, "bao.hcl")
    with open(config, "w") as f:
        f.write(f'storage "raft" {{\n  path = "{work}"\n  node_id = "bench"\n}}\n'
                f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  tls_disable = true\n}}\n'
                f'api_addr = "http://127.0.0.1:{port}"\ncluster_addr = "http://127.0.0.1:{cluster_port}"\n'
                f'log_level = "warn"\n'
                f'audit "file" "file" {{\n  options {{\n    file_path = "{work}/audit.log"\n  }}\n}}\n')
    return config


def measure(name, address, work, args, rows, round_number):
    root = init_unseal(address, lambda token: call(
        "POST", f"{address}/v1/sys/mounts/secret", token, {"type": "kv", "options": {"version": "2"}}))
    call("PUT", f"{address}/v1/sys/policies/acl/bench", root, {"policy": POLICY})
    token = call("POST", f"{address}/v1/auth/token/create", root,
                 {"policies": ["bench"], "ttl": "1h"})["auth"]["client_token"]
    read = f"{address}/v1/secret/data/bench/read"
    call("POST", read, token, {"data": {"user": "svc", "password": "0123456789abcdef0123456789abcdef"}})
    script = os.path.join(work, "write.lua")
    with open(script, "w") as f:
        f.write(f'token = "{token}"\n' + WRITE_LUA)
    wrk(read, token, 2, args.connections)  # warm-up
    rps, p50, p99, errors = wrk(read, token, args.seconds, args.connections)
    rows.append((name, "KV v2 read, policy token", round_number, rps, p50, p99, errors))
    wrk(f"{address}/", token, 2, args.connections, script)  # warm-up
    rps, p50, p99, errors = wrk(f"{address}/", token, args.seconds, args.connections, script)
    rows.append((name, "KV v2 durable write, policy token", round_number, rps, p50, p99, errors))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--custos", required=True)
    parser.add_argument("--bao", required=True)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    top = tempfile.mkdtemp(prefix="custos-bench-audit-")
    log = open(os.path.join(top, "servers.log"), "w")
    rows, sizes = [], []
    try:
        for round_number in range(1, args.rounds + 1):
            for name in ["custos, audit on", "custos, audit off", "openbao, audit on"]:
                work = os.path.join(top, f"{round_number}-{name.replace(', ', '-').replace(' ', '-')}")
                os.makedirs(work)
                port = free_port()
                if name.startswith("custos"):
                    command = [args.custos, "server", "--config",
                               custos_config(work, port, audit=name.endswith("on"))]
                else:
                    command = [args.bao, "server", f"-config={bao_config(work, port, free_port())}"]
                address = f"http://127.0.0.1:{port}"
                process = start(command, log)
                try:
                    wait_until_up(address)
                    measure(name, address, work, args, rows, round_number)
                finally:
                    stop(process)
                audit_log = os.path.join(work, "audit.log")
                if os.path.exists(audit_log):
                    with open(audit_log, "rb") as f:
                        lines = sum(1 for _ in f)
                    sizes.append((name, round_number, os.path.getsize(audit_log), lines))
    finally:
        log.close()
        shutil.rmtree(top, ignore_errors=True)
    print("| server | operation | round | requests/s | p50 (ms) | p99 (ms) | non-2xx |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, operation, round_number, rps, p50, p99, errors in rows:
        print(f"| {name} | {operation} | {round_number} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {errors} |")
    print()
    print("| server | round | audit log bytes | records | bytes/record |")
    print("| --- | --- | --- | --- | --- |")
    for name, round_number, size, lines in sizes:
        print(f"| {name} | {round_number} | {size:,} | {lines:,} | {size / max(lines, 1):,.0f} |")


if __name__ == "__main__":
    main()
