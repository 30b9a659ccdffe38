#!/usr/bin/env python3
"""KV v2 read and durable-write throughput of custos and OpenBao, side by side, with wrk.

Usage: scripts/bench_kv.py --custos target/release/custos --bao PATH/TO/bao [--seconds 10] [--connections 64]

Reads: both servers in dev mode (in-memory), GET of one secret, `--connections` keep-alive
connections. Durable writes: custos on a SQLite file, OpenBao on its integrated (raft) storage,
both initialised with one key share and unsealed, POSTs to 10,000 distinct secrets.
Loopback only; every process started here is stopped before the script exits.
Prints a Markdown table (requests/s, p50, p99).
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

WRITE_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local path = "/v1/secret/data/bench/w" .. math.random(1, 10000)
  return wrk.format("POST", path, {["X-Vault-Token"] = token, ["Content-Type"] = "application/json"},
    '{"data":{"user":"svc","password":"0123456789abcdef0123456789abcdef"}}')
end
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, token=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("X-Vault-Token", token)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
        return json.loads(text) if text else None


def wait_until_up(address):
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            call("GET", f"{address}/v1/sys/seal-status")
            return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"{address} did not come up")


def wrk(url, token, seconds, connections, script=None):
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
               "-H", f"X-Vault-Token: {token}"]
    env = dict(os.environ)
    if script:
        command += ["-s", script]
    command.append(url)
    output = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))

    def percentile(p):
        match = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", output)
        value, unit = float(match.group(1)), match.group(2)
        return value * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return rps, percentile(50), percentile(99), int(errors.group(1)) if errors else 0


def start(command, log):
    return subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def init_unseal(address, kv_enable):
    init = call("PUT", f"{address}/v1/sys/init", body={"secret_shares": 1, "secret_threshold": 1})
    call("PUT", f"{address}/v1/sys/unseal", body={"key": init["keys"][0]})
    token = init["root_token"]
    deadline = time.time() + 60
    while True:
        try:
            kv_enable(token)
            return token
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--custos", required=True)
    parser.add_argument("--bao", required=True)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="custos-bench-")
    log = open(os.path.join(work, "servers.log"), "w")
    script = os.path.join(work, "write.lua")
    rows = []
    try:
        # Reads, dev mode.
        for name, command in [
            ("custos", lambda port: [args.custos, "server", "--dev", "--dev-listen-address",
                                     f"127.0.0.1:{port}", "--dev-root-token-id", "root"]),
            ("openbao", lambda port: [args.bao, "server", "-dev", "-dev-root-token-id=root",
                                      f"-dev-listen-address=127.0.0.1:{port}"]),
        ]:
            port = free_port()
            address = f"http://127.0.0.1:{port}"
            process = start(command(port), log)
            try:
                wait_until_up(address)
                time.sleep(1)
                call("POST", f"{address}/v1/secret/data/bench/read", "root",
                     {"data": {"user": "svc", "password": "0123456789abcdef0123456789abcdef"}})
                wrk(f"{address}/v1/secret/data/bench/read", "root", 2, args.connections)  # warm-up
                rps, p50, p99, errors = wrk(f"{address}/v1/secret/data/bench/read", "root",
                                            args.seconds, args.connections)
                rows.append((name, "read (dev, in-memory)", rps, p50, p99, errors))
            finally:
                stop(process)

        # Durable writes.
        custos_dir = os.path.join(work, "custos")
        bao_dir = os.path.join(work, "bao")
        os.makedirs(custos_dir)
        os.makedirs(bao_dir)
        port = free_port()
        config = os.path.join(custos_dir, "custos.toml")
        with open(config, "w") as f:
            f.write(f'version = 1\n[listener]\naddress = "127.0.0.1:{port}"\ntls_disable = true\n'
                    f'[storage]\nbackend = "sqlite"\npath = "{custos_dir}/custos.db"\n[log]\nlevel = "warn"\n')
        bao_port, bao_cluster = free_port(), free_port()
        bao_config = os.path.join(bao_dir, "bao.hcl")
        with open(bao_config, "w") as f:
            f.write(f'storage "raft" {{\n  path = "{bao_dir}"\n  node_id = "bench"\n}}\n'
                    f'listener "tcp" {{\n  address = "127.0.0.1:{bao_port}"\n  tls_disable = true\n}}\n'
                    f'api_addr = "http://127.0.0.1:{bao_port}"\ncluster_addr = "http://127.0.0.1:{bao_cluster}"\n'
                    f'log_level = "warn"\n')
        for name, command, address, storage in [
            ("custos", [args.custos, "server", "--config", config], f"http://127.0.0.1:{port}", "SQLite file"),
            ("openbao", [args.bao, "server", f"-config={bao_config}"], f"http://127.0.0.1:{bao_port}", "raft"),
        ]:
            process = start(command, log)
            try:
                wait_until_up(address)
                token = init_unseal(address, lambda token: call(
                    "POST", f"{address}/v1/sys/mounts/secret", token, {"type": "kv", "options": {"version": "2"}}))
                with open(script, "w") as f:
                    f.write(f'token = "{token}"\n' + WRITE_LUA)
                wrk(f"{address}/", token, 2, args.connections, script)  # warm-up
                rps, p50, p99, errors = wrk(f"{address}/", token, args.seconds, args.connections, script)
                rows.append((name, f"durable write ({storage})", rps, p50, p99, errors))
            finally:
                stop(process)
    finally:
        log.close()
        shutil.rmtree(work, ignore_errors=True)

    print(f"| server | operation | requests/s | p50 (ms) | p99 (ms) | non-2xx |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, operation, rps, p50, p99, errors in rows:
        print(f"| {name} | {operation} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {errors} |")


if __name__ == "__main__":
    main()
