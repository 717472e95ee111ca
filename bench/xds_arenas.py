#!/usr/bin/env python3
"""Where skiff's RSS sits after a big xDS push, per malloc arena (see bench/xds_scale.md, third round).

Pushes N clusters (empty assignments) from skiff-xds-server like bench/xds_scale.py, waits for RSS to
settle, then, through gdb (attach needs ptrace rights): each thread's malloc arena (`thread_arena`),
`malloc_info()` per arena (system bytes, free bytes incl. the top chunk), and the resident size of each
anonymous mapping from /proc/<pid>/smaps. Finally calls `malloc_trim(0)` in skiff and reads RSS again,
to tell memory that trimming would return from memory it cannot.

Usage: bench/xds_arenas.py [--delta] [--clusters 10000] [--out DIR]   (raw files are left in DIR)
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import xds_scale as xs  # noqa: E402


def anon_mappings(pid):
    out, cur = [], None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
        if m:
            cur = {"start": int(m[1], 16), "end": int(m[2], 16), "name": m[4]}
            out.append(cur)
        elif cur is not None and line.startswith("Rss:"):
            cur["rss_kib"] = int(line.split()[1])
    return [m for m in out if m["name"] in ("", "[heap]") and m.get("rss_kib")]


def gdb(pid, *commands):
    argv = ["gdb", "-p", str(pid), "-batch", "-nx"]
    for c in commands:
        argv += ["-ex", c]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout


def arenas(pid, out):
    """{arena address: {threads, system, free, rss_kib}} from gdb + malloc_info + smaps."""
    xml = Path(out) / f"malloc_info.{pid}.xml"
    text = gdb(pid, "thread apply all p (void*)thread_arena", "p (void*)&main_arena",
               f'call (int)malloc_info(0, (void*)fopen("{xml}", "w"))', "call (int)fflush(0)")
    owners, thread, main_arena = {}, None, None
    for line in text.splitlines():
        m = re.match(r'^Thread \d+ .*"(.*)"\)', line)
        if m:
            thread = m[1]
        m = re.match(r"^\$\d+ = \(void \*\) (0x[0-9a-f]+)( <main_arena>)?", line)
        if m and m[2]:
            main_arena = int(m[1], 16)
        if m and thread:
            owners.setdefault(int(m[1], 16), []).append(thread)
            thread = None
    maps = anon_mappings(pid)
    result = []
    for addr, threads in owners.items():
        base = addr & ~((64 << 20) - 1)  # a thread arena's heap is 64 MiB aligned; main uses [heap]
        if addr == main_arena:
            rss = sum(m["rss_kib"] for m in maps if m["name"] == "[heap]")
        else:
            rss = sum(m["rss_kib"] for m in maps if m["start"] == base) or None
        result.append({"arena": hex(addr), "threads": sorted(set(threads)), "rss_kib": rss})
    heaps = []
    for h in ET.parse(xml).getroot().findall("heap"):
        total = {t.get("type"): int(t.get("size")) for t in h.findall("total")}
        system = {t.get("type"): int(t.get("size")) for t in h.findall("system")}
        heaps.append({"nr": int(h.get("nr")), "system": system.get("current"), "free": total.get("rest")})
    return result, heaps, sum(m["rss_kib"] for m in maps)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--delta", action="store_true")
    p.add_argument("--clusters", type=int, default=10000)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--skiff", type=Path, default=xs.ROOT / "build/bin/skiff")
    p.add_argument("--server", type=Path, default=xs.ROOT / "build/bin/skiff-xds-server")
    p.add_argument("--out", default=tempfile.mkdtemp(prefix="skiff-xds-arenas-"))
    a = p.parse_args()
    args = argparse.Namespace(delta=a.delta, prefix="bench-", skiff=a.skiff, server=a.server, wrap="",
                              concurrency=a.concurrency, timeout=120)
    with tempfile.TemporaryDirectory(prefix="skiff-xds-bench-") as tmp:
        run = xs.Run(args, tmp)
        try:
            rss0, heap0 = xs.settled_rss(run.pid), xs.heap_bytes(run.admin_port)
            run.generate(a.clusters, 0, 120)
            rss1, heap1 = xs.settled_rss(run.pid), xs.heap_bytes(run.admin_port)
            per_arena, heaps, anon = arenas(run.pid, a.out)
            gdb(run.pid, "call (int)malloc_trim(0)")
            rss2 = xs.settled_rss(run.pid)
        finally:
            run.close()
    print(json.dumps({
        "mode": "delta" if a.delta else "sotw", "clusters": a.clusters,
        "bytes_per_cluster": round((rss1 - rss0) * 1024 / a.clusters),
        "heap_bytes_per_cluster": xs.per(xs.diff(heap0, heap1), a.clusters),
        "rss_kib": rss1, "anon_rss_kib": anon, "rss_kib_after_malloc_trim": rss2,
        "arenas": sorted(per_arena, key=lambda r: -(r["rss_kib"] or 0)),
        "malloc_info_heaps": heaps, "raw": a.out,
    }, indent=1))


if __name__ == "__main__":
    main()
