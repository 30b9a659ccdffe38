#!/usr/bin/env python3
"""Benchmark `custos scan` against gitleaks and kingfisher, side by side in one run.

Generates (outside the repository):
  * a source tree of --tree-mb megabytes (default 1024) of code-like text with a few
    planted secrets, and
  * a git repository of --commits commits (default 10000) built with `git fast-import`,
then times each scanner on both and reports MB/s. With --rounds N every input is scanned N
times, the scanners taking turns within each round so that they meet the same machine load,
and a summary gives each scanner's median and best wall-clock time and custos's speed-up over
the others per round. --tools picks the scanners to run. With --corpus DIR (the labelled corpus
written by `CUSTOS_WRITE_CORPUS=DIR cargo test -p custos-scanner --test it corpus`) it also
scores precision and recall of every scanner on that corpus.

Usage:
  python3 scripts/scanner_bench.py --custos target/release/custos \\
      --gitleaks /tmp/benchvenv/bin/gitleaks --kingfisher /tmp/benchvenv/bin/kingfisher \\
      --work /tmp/custos-bench --corpus /tmp/custos-corpus
"""

import argparse
import json
import os
import random
import string
import subprocess
import sys
import time

B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase

CODE_LINES = [
    "import os", "import sys", "from collections import defaultdict",
    "def handle_request(request, context=None):", "    result = compute(request.body)",
    "    if not result:", "        raise ValueError('empty result')", "    return result",
    "class UserRepository:", "    def __init__(self, session):", "        self.session = session",
    "fn parse_header(input: &[u8]) -> Result<Header, Error> {", "    let mut cursor = 0;",
    "    while cursor < input.len() {", "        cursor += 1;", "    }", "}",
    "const items = await fetch(`/api/items?page=${page}`).then((r) => r.json());",
    "export function formatDate(date) { return date.toISOString().slice(0, 10); }",
    "  - name: Install dependencies", "    run: npm ci", "timeout: 30s", "replicas: 3",
    "SELECT u.id, u.email FROM users u JOIN orders o ON o.user_id = u.id WHERE o.total > 100;",
    "<div class=\"card\"><h2>{{ title }}</h2><p>{{ body }}</p></div>",
    "// TODO: handle the retry budget when the upstream is slow",
    "    logger.info(\"processed %d records in %.2fs\", count, elapsed)",
    "password_field = forms.CharField(widget=forms.PasswordInput)",
    "token = request.headers.get('Authorization')", "api_key = os.environ['API_KEY']",
    "    let digest = sha256(&payload);", "version = \"1.4.2\"",
]


def rand(alphabet, n, rng):
    return "".join(rng.choice(alphabet) for _ in range(n))


def planted_secret(rng):
    kind = rng.randrange(4)
    if kind == 0:
        return "AWS_ACCESS_KEY_ID=AKIA" + rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16, rng)
    if kind == 1:
        return "SLACK_BOT_TOKEN=xoxb-%s-%s-%s" % (rand(string.digits, 12, rng), rand(string.digits, 13, rng), rand(B62, 24, rng))
    if kind == 2:
        return "stripe_key = \"sk_live_%s\"" % rand(B62, 24, rng)
    return "DATABASE_URL=postgres://app:%s@db.internal:5432/app" % rand(B62, 18, rng)


def gen_tree(root, total_mb, seed=7):
    rng = random.Random(seed)
    pool = []
    for _ in range(20000):
        line = rng.choice(CODE_LINES)
        if rng.random() < 0.3:
            line += "  # " + " ".join(rand(string.ascii_lowercase, rng.randint(3, 9), rng) for _ in range(rng.randint(2, 8)))
        if rng.random() < 0.02:
            line = "const BLOB = \"%s\";" % rand(string.ascii_letters + string.digits + "+/", rng.randint(200, 2000), rng)
        pool.append(line)
    target = total_mb * 1024 * 1024
    written = files = 0
    exts = [".py", ".rs", ".js", ".ts", ".yaml", ".go", ".java", ".md"]
    while written < target:
        d = os.path.join(root, "pkg%03d" % (files // 500), "mod%02d" % ((files // 50) % 10))
        os.makedirs(d, exist_ok=True)
        lines = rng.choices(pool, k=rng.randint(200, 1200))
        if rng.random() < 0.01:
            lines.insert(rng.randrange(len(lines)), planted_secret(rng))
        data = ("\n".join(lines) + "\n").encode()
        with open(os.path.join(d, "file%05d%s" % (files, rng.choice(exts))), "wb") as f:
            f.write(data)
        written += len(data)
        files += 1
    return written, files


def gen_repo(root, commits, seed=11):
    rng = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    subprocess.run(["git", "init", "-q", "-b", "main", root], check=True, env=env)
    proc = subprocess.Popen(["git", "-C", root, "fast-import", "--quiet"], stdin=subprocess.PIPE, env=env)
    out = proc.stdin
    contents = {}
    for n in range(1, commits + 1):
        branch = "main" if n % 50 else "side%d" % (n // 50)
        changes = []
        for _ in range(rng.randint(1, 3)):
            path = "src/dir%02d/file%03d.py" % (rng.randrange(40), rng.randrange(200))
            lines = contents.get(path, [])
            lines = lines + rng.choices(CODE_LINES, k=rng.randint(5, 40))
            if rng.random() < 0.01:
                lines.append(planted_secret(rng))
            lines = lines[-400:]
            contents[path] = lines
            changes.append((path, ("\n".join(lines) + "\n").encode()))
        ts = 1_600_000_000 + n * 60
        msg = b"commit %d\n" % n
        out.write(b"commit refs/heads/%s\nmark :%d\nauthor Bench <bench@example.org> %d +0000\ncommitter Bench <bench@example.org> %d +0000\ndata %d\n%s" % (branch.encode(), n, ts, ts, len(msg), msg))
        if n > 1:
            out.write(b"from :%d\n" % (n - 1))
        for path, data in changes:
            out.write(b"M 644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data))
    out.close()
    proc.wait()
    subprocess.run(["git", "-C", root, "reset", "-q", "--hard", "main"], check=True, env=env)
    # Bytes of added lines git log -p shows: what every scanner has to read.
    log = subprocess.run(["git", "-C", root, "log", "--all", "-p", "-U0", "--format=%H"], stdout=subprocess.PIPE, check=True, env=env).stdout
    return len(log)


def run(cmd, cwd=None):
    start = time.perf_counter()
    before = os.times()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    after = os.times()
    proc.cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return time.perf_counter() - start, proc


def scanners(args, target, report, git_mode):
    out = {}
    if git_mode:
        out["custos"] = [args.custos, "scan", "--git", "--no-progress", "--format", "json", "--output", report + ".custos", target]
        out["gitleaks"] = [args.gitleaks, "git", "--no-banner", "--report-format", "json", "--report-path", report + ".gitleaks", target]
        out["kingfisher"] = [args.kingfisher, "scan", target, "--format", "json", "--output", report + ".kingfisher", "--no-update-check", "--no-validate"]
    else:
        out["custos"] = [args.custos, "scan", "--no-progress", "--format", "json", "--output", report + ".custos", target]
        out["gitleaks"] = [args.gitleaks, "dir", "--no-banner", "--report-format", "json", "--report-path", report + ".gitleaks", target]
        out["kingfisher"] = [args.kingfisher, "scan", target, "--format", "json", "--output", report + ".kingfisher", "--no-update-check", "--no-validate", "--no-binary", "--git-history", "none"]
    return out


def findings_by_path(tool, report, root):
    """Paths (relative to root) -> number of findings, parsed from each tool's JSON report."""
    result = {}
    try:
        text = open(report).read()
    except OSError:
        return result
    records = []
    if tool == "custos":
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        paths = [r["path"] for r in records]
    elif tool == "gitleaks":
        records = json.loads(text or "[]")
        paths = [r.get("File", "") for r in records]
    else:
        data = json.loads(text or "{}")
        items = data.get("findings", data) if isinstance(data, dict) else data
        paths = []
        for item in items if isinstance(items, list) else []:
            f = item.get("finding", item)
            paths.append(f.get("path") or f.get("file") or "")
    for p in paths:
        rel = os.path.relpath(p, root) if os.path.isabs(p) else os.path.normpath(p)
        if rel.startswith(os.path.basename(root) + "/"):
            rel = rel[len(os.path.basename(root)) + 1:]
        result[rel] = result.get(rel, 0) + 1
    return result


def score(labels, found):
    tp = fp = fn = 0
    for path, expected in labels.items():
        n = found.get(path, 0)
        if expected is None:
            fp += n
        elif n > 0:
            tp += 1
            fp += n - 1
        else:
            fn += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return tp, fp, fn, precision, recall


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--custos", required=True)
    ap.add_argument("--gitleaks", required=True)
    ap.add_argument("--kingfisher", required=True)
    ap.add_argument("--work", default="/tmp/custos-bench")
    ap.add_argument("--tree-mb", type=int, default=1024)
    ap.add_argument("--commits", type=int, default=10000)
    ap.add_argument("--corpus")
    ap.add_argument("--skip-generate", action="store_true")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--tools", default="custos,gitleaks,kingfisher", help="comma-separated scanners to run")
    ap.add_argument("--inputs", default="tree,git", help="comma-separated inputs to scan")
    args = ap.parse_args()
    tree = os.path.join(args.work, "tree")
    repo = os.path.join(args.work, "repo")
    meta_path = os.path.join(args.work, "meta.json")
    if not args.skip_generate:
        subprocess.run(["rm", "-rf", args.work], check=True)
        os.makedirs(args.work)
        t = time.perf_counter()
        tree_bytes, tree_files = gen_tree(tree, args.tree_mb)
        print("generated tree: %d files, %.1f MB in %.0fs" % (tree_files, tree_bytes / 1e6, time.perf_counter() - t), flush=True)
        t = time.perf_counter()
        diff_bytes = gen_repo(repo, args.commits)
        print("generated repo: %d commits, %.1f MB of patches in %.0fs" % (args.commits, diff_bytes / 1e6, time.perf_counter() - t), flush=True)
        json.dump({"tree_bytes": tree_bytes, "tree_files": tree_files, "diff_bytes": diff_bytes}, open(meta_path, "w"))
    meta = json.load(open(meta_path))
    subprocess.run(["sh", "-c", "find %s -type f -exec cat {} + > /dev/null" % tree], check=False)  # warm the page cache
    tools = args.tools.split(",")
    inputs = [(label, target, size, git_mode) for label, target, size, git_mode in [("tree", tree, meta["tree_bytes"], False), ("git", repo, meta["diff_bytes"], True)] if label in args.inputs.split(",")]
    walls = {}  # (input, tool) -> wall-clock seconds per round
    for round_number in range(1, args.rounds + 1):
        for label, target, size, git_mode in inputs:
            for tool, cmd in scanners(args, target, os.path.join(args.work, "report-" + label), git_mode).items():
                if tool not in tools:
                    continue
                seconds, proc = run(cmd)
                ok = proc.returncode in (0, 1, 200, 205)
                walls.setdefault((label, tool), []).append(seconds)
                prefix = "round %d  " % round_number if args.rounds > 1 else ""
                print("%s%-5s %-10s %7.2fs wall %8.1f MB/s  %7.2fs CPU %8.1f MB per CPU-second  exit=%d%s" % (prefix, label, tool, seconds, size / 1e6 / seconds, proc.cpu, size / 1e6 / max(proc.cpu, 1e-9), proc.returncode, "" if ok else "  " + proc.stderr.decode(errors="replace")[-300:]), flush=True)
    if args.rounds > 1:
        for label, _, _, _ in inputs:
            for tool in tools:
                times = sorted(walls.get((label, tool), []))
                if times:
                    print("%-5s %-10s median %.2fs  best %.2fs" % (label, tool, times[len(times) // 2], times[0]), flush=True)
            for other in tools:
                if other != "custos" and (label, "custos") in walls and (label, other) in walls:
                    ratios = ["%.2fx" % (theirs / ours) for ours, theirs in zip(walls[(label, "custos")], walls[(label, other)])]
                    print("%-5s custos vs %-10s wall-clock speed-up per round: %s" % (label, other, " ".join(ratios)), flush=True)
    if args.corpus:
        labels = json.load(open(os.path.join(args.corpus, "labels.json")))
        for tool, cmd in scanners(args, args.corpus, os.path.join(args.work, "report-corpus"), False).items():
            if tool not in tools:
                continue
            run(cmd)
            found = findings_by_path(tool, os.path.join(args.work, "report-corpus." + tool), args.corpus)
            tp, fp, fn, p, r = score(labels, found)
            print("corpus %-10s TP=%d FP=%d FN=%d precision=%.3f recall=%.3f" % (tool, tp, fp, fn, p, r), flush=True)


if __name__ == "__main__":
    main()
