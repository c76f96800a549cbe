#!/usr/bin/env python3
"""Cold start of a function with dependencies, with and without the dependency cache.

For node (the seed's `--dependency pg@8.11.5 --dependency axios@1.6.7`) and python (their
counterparts `psycopg2-binary==2.9.9`, `requests==2.31.0`; the seed shows no python
dependencies), it starts the release kipper-shim as a fresh pod would and measures the time
from the process start to the first 200 answer of a request sent at once (held by the shim
until the handler is ready):

- "install at start": an empty cache and an empty npm/pip cache, i.e. what every cold start
  paid before the cache claim (and what a pod pays the first time a manifest is seen);
- "cache warm": KIPPER_DEPS_CACHE already holds the install, as the `<fn>-deps` claim does
  after the first pod, so nothing is installed.

It also runs the init step (`KIPPER_MODE=install`) once per runtime under peak.py's sampler:
its peak resident memory is what the `deps` init container's limit must hold.

    cargo build --release -p kipper-shim
    bench/deps/cold_start.py [--shim target/release/kipper-shim] [--runs 3]

Needs the npm and PyPI registries. Prints one JSON line per measurement and a summary table.
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peak import tree_rss  # noqa: E402

NODE = {
    "package.json": json.dumps({
        "name": "deps-bench", "version": "1.0.0", "private": True,
        "dependencies": {"pg": "8.11.5", "axios": "1.6.7"},
    }),
    "index.js": "const pg = require('pg');\nconst axios = require('axios');\n"
                "module.exports = async () => ({ pg: typeof pg.Client, axios: typeof axios.get });\n",
}
PYTHON = {
    "requirements.txt": "psycopg2-binary==2.9.9\nrequests==2.31.0\n",
    "handler.py": "import psycopg2\nimport requests\n\n"
                  "def handler(event, context):\n    return {'psycopg2': psycopg2.__version__, 'requests': requests.__version__}\n",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(dir, files):
    os.makedirs(dir, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(dir, name), "w") as f:
            f.write(text)


def env_for(root, cache, port):
    env = dict(os.environ)
    env.update({
        "PORT": str(port), "KIPPER_BIND": "127.0.0.1", "KIPPER_ADMIN_PORT": "0",
        "KIPPER_WORK_DIR": os.path.join(root, "work"), "KIPPER_WORKERS": "1",
        "KIPPER_LOG_FORMAT": "text",
        # A new pod's /tmp: empty npm and pip caches.
        "npm_config_cache": os.path.join(root, "npm-cache"),
        "PIP_CACHE_DIR": os.path.join(root, "pip-cache"),
    })
    if cache:
        env["KIPPER_DEPS_CACHE"] = cache
    return env


def first_answer(shim, handler, env, port):
    """Seconds from the process start to the first 200 of GET /, and the body."""
    log = open(os.path.join(env["KIPPER_WORK_DIR"] + ".log"), "w")
    started = time.monotonic()
    proc = subprocess.Popen([shim, handler], env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"kipper-shim exited: see {log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read()
                if resp.status == 200:
                    return time.monotonic() - started, body.decode()
                raise SystemExit(f"HTTP {resp.status}: {body!r}; see {log.name}")
            except (ConnectionRefusedError, ConnectionResetError):
                time.sleep(0.005)
    finally:
        proc.terminate()
        proc.wait()
        log.close()


def install_peak(shim, handler, env):
    env = dict(env, KIPPER_MODE="install")
    started = time.monotonic()
    proc = subprocess.Popen([shim, handler], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.02)
    if proc.returncode != 0:
        raise SystemExit(f"install mode exited {proc.returncode}")
    return round(peak / 1024, 1), round(time.monotonic() - started, 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shim", default="target/release/kipper-shim")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    shim = os.path.abspath(args.shim)
    if not os.path.exists(shim):
        raise SystemExit(f"{shim} is missing: cargo build --release -p kipper-shim")
    rows = []
    for runtime, files, handler_name in (("node", NODE, "index.js"), ("python", PYTHON, "handler.py")):
        base = tempfile.mkdtemp(prefix=f"kipper-deps-bench-{runtime}-")
        code = os.path.join(base, "function")
        write(code, files)
        handler = os.path.join(code, handler_name)
        cache = os.path.join(base, "deps-cache")
        # The init step: fills the cache, its peak measured.
        root = os.path.join(base, "init")
        os.makedirs(root)
        peak, init_secs = install_peak(shim, handler, env_for(root, cache, free_port()))
        print(json.dumps({"runtime": runtime, "case": "init step (KIPPER_MODE=install)", "peak_rss_mib": peak, "seconds": init_secs}))
        cold, warm = [], []
        for i in range(args.runs):
            for label, use_cache, out in (("install at start", None, cold), ("cache warm", cache, warm)):
                root = os.path.join(base, f"run-{label[:4]}-{i}")
                os.makedirs(root)
                if use_cache is None:
                    # Fresh, empty cache dir: the shim installs, as every pod did before.
                    c = os.path.join(root, "empty-cache")
                else:
                    c = use_cache
                port = free_port()
                secs, body = first_answer(shim, handler, env_for(root, c, port), port)
                out.append(secs)
                print(json.dumps({"runtime": runtime, "case": label, "run": i, "first_200_s": round(secs, 3), "body": body}))
        rows.append((runtime, peak, init_secs, statistics.median(cold), statistics.median(warm)))
        shutil.rmtree(base, ignore_errors=True)
    print()
    print("| runtime | init step peak RSS | init step | cold start, install at start (median) | cold start, cache warm (median) |")
    print("|---|---|---|---|---|")
    for runtime, peak, secs, cold, warm in rows:
        print(f"| {runtime} | {peak} MiB | {secs} s | {cold:.2f} s | {warm:.3f} s |")


if __name__ == "__main__":
    main()
