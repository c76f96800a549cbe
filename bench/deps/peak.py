#!/usr/bin/env python3
"""Peak memory of a dependency install, as a container's memory limit sees it.

Runs COMMAND, samples every 20 ms the resident memory (VmRSS) of the whole
process tree (npm and pip start children), and prints the peak of that sum,
the largest single process (ru_maxrss) and the wall time, as one JSON line.

    bench/deps/peak.py -- npm install pg@8.11.5 axios@1.6.7
"""
import json
import os
import resource
import subprocess
import sys
import time


def children_of():
    parent = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parent[int(pid)] = int(fields[1])
        except OSError:
            pass
    return parent


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss(root):
    parent = children_of()
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(rss_kib(p) for p in tree)


def main():
    args = sys.argv[1:]
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        sys.exit("usage: peak.py -- COMMAND...")
    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.02)
    wall = time.monotonic() - started
    err = proc.stderr.read().decode(errors="replace")
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({
        "command": " ".join(args),
        "exit": proc.returncode,
        "peak_tree_rss_mib": round(peak / 1024, 1),
        "largest_process_mib": round(largest / 1024, 1),
        "seconds": round(wall, 2),
    }))
    if proc.returncode != 0:
        sys.stderr.write(err[-2000:])
        sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
