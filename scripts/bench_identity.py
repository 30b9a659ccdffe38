#!/usr/bin/env python3
"""Policy-checked reads, token lookups and logins of custos and OpenBao, side by side, with wrk.

Usage: scripts/bench_identity.py --custos target/release/custos --bao PATH/TO/bao [--seconds 10]
       [--connections 64] [--login-connections 16] [--rounds 1]

Both servers run in dev mode (in-memory) with the same set-up: a KV v2 secret at
`secret/data/app/read`, an ACL policy `bench` that allows it only through a `+`/`*` rule
(`path "secret/data/+/*"`), a token with that policy, a userpass user and an AppRole role.
Measured, per server and round:
- KV v2 read with the root token and with the policy-limited token (`--connections`);
- `auth/token/lookup-self` with the policy-limited token;
- userpass login and AppRole login (`--login-connections`; each login creates a token).
Loopback only; every process started here is stopped before the script exits.
Prints one Markdown row per server, operation and round.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kv import call, free_port, start, stop, wait_until_up, wrk  # noqa: E402

POLICY = 'path "secret/data/+/*" {\n  capabilities = ["read"]\n}\n'

LOGIN_LUA = """
request = function()
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end
"""


def lua(work, name, path, body):
    script = os.path.join(work, f"{name}.lua")
    escaped = body.replace("\\", "\\\\").replace("'", "\\'")
    with open(script, "w") as f:
        f.write(f"path = '{path}'\nbody = '{escaped}'\n" + LOGIN_LUA)
    return script


def set_up(address):
    call("POST", f"{address}/v1/secret/data/app/read", "root",
         {"data": {"user": "svc", "password": "0123456789abcdef0123456789abcdef"}})
    call("PUT", f"{address}/v1/sys/policies/acl/bench", "root", {"policy": POLICY})
    token = call("POST", f"{address}/v1/auth/token/create", "root",
                 {"policies": ["bench"], "ttl": "1h"})["auth"]["client_token"]
    call("POST", f"{address}/v1/sys/auth/userpass", "root", {"type": "userpass"})
    call("POST", f"{address}/v1/auth/userpass/users/alice", "root",
         {"password": "correct horse battery staple", "token_policies": "bench"})
    call("POST", f"{address}/v1/sys/auth/approle", "root", {"type": "approle"})
    call("POST", f"{address}/v1/auth/approle/role/bench", "root", {"token_policies": "bench"})
    role_id = call("GET", f"{address}/v1/auth/approle/role/bench/role-id", "root")["data"]["role_id"]
    secret_id = call("POST", f"{address}/v1/auth/approle/role/bench/secret-id", "root", {})["data"]["secret_id"]
    return token, role_id, secret_id


def measure(name, address, work, args, rows, round_number):
    token, role_id, secret_id = set_up(address)
    read = f"{address}/v1/secret/data/app/read"
    wrk(read, token, 2, args.connections)  # warm-up
    for operation, url, credential in [
        ("KV v2 read, root token", read, "root"),
        ("KV v2 read, policy `secret/data/+/*`", read, token),
        ("token lookup-self", f"{address}/v1/auth/token/lookup-self", token),
    ]:
        rps, p50, p99, errors = wrk(url, credential, args.seconds, args.connections)
        rows.append((name, operation, round_number, rps, p50, p99, errors))
    for operation, script in [
        ("userpass login", lua(work, "userpass", "/v1/auth/userpass/login/alice",
                               '{"password":"correct horse battery staple"}')),
        ("AppRole login", lua(work, "approle", "/v1/auth/approle/login",
                              f'{{"role_id":"{role_id}","secret_id":"{secret_id}"}}')),
    ]:
        rps, p50, p99, errors = wrk(f"{address}/", "", args.seconds, args.login_connections, script)
        rows.append((name, operation, round_number, rps, p50, p99, errors))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--custos", required=True)
    parser.add_argument("--bao", required=True)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--login-connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="custos-bench-identity-")
    log = open(os.path.join(work, "servers.log"), "w")
    rows = []
    servers = [
        ("custos", lambda port: [args.custos, "server", "--dev", "--dev-listen-address",
                                 f"127.0.0.1:{port}", "--dev-root-token-id", "root"]),
        ("openbao", lambda port: [args.bao, "server", "-dev", "-dev-root-token-id=root",
                                  f"-dev-listen-address=127.0.0.1:{port}"]),
    ]
    try:
        for round_number in range(1, args.rounds + 1):
            for name, command in servers:
                port = free_port()
                address = f"http://127.0.0.1:{port}"
                process = start(command(port), log)
                try:
                    wait_until_up(address)
                    time.sleep(1)
                    measure(name, address, work, args, rows, round_number)
                finally:
                    stop(process)
    finally:
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    print("| server | operation | round | requests/s | p50 (ms) | p99 (ms) | non-2xx |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, operation, round_number, rps, p50, p99, errors in rows:
        print(f"| {name} | {operation} | {round_number} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {errors} |")


if __name__ == "__main__":
    main()
