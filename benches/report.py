#!/usr/bin/env python3
"""Turns criterion's results into the Markdown tables of BENCHMARKS.md.

    python3 benches/report.py [CRITERION_DIR] [--prefix stack_] [--bare stack_bare]

CRITERION_DIR defaults to target/criterion. For every benchmark whose directory starts with
the prefix, it prints the median (criterion's `new/estimates.json`), the time added over the
bare benchmark and the ratio to it, measured in the same run, and the allocations per call
where the bench wrote them (`allocations.json`, by benchmark name). Only the standard library
is used, so it runs anywhere Python 3 does.
"""

import argparse
import json
import pathlib
import sys


def median_ns(bench_dir: pathlib.Path):
    estimates = bench_dir / "new" / "estimates.json"
    if not estimates.exists():
        return None
    data = json.loads(estimates.read_text())
    return data["median"]["point_estimate"]


def bench_name(bench_dir: pathlib.Path) -> str:
    benchmark = bench_dir / "new" / "benchmark.json"
    if benchmark.exists():
        return json.loads(benchmark.read_text()).get("full_id", bench_dir.name)
    return bench_dir.name


def fmt_ns(ns: float) -> str:
    if ns >= 1_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    if ns >= 1_000:
        return f"{ns / 1_000:.2f} µs"
    return f"{ns:.1f} ns"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", default="target/criterion")
    parser.add_argument("--prefix", default="stack_")
    parser.add_argument("--bare", default="stack_bare")
    args = parser.parse_args()
    root = pathlib.Path(args.dir)
    if not root.is_dir():
        print(f"no criterion results in {root}: run the benches first", file=sys.stderr)
        return 1
    allocations = {}
    alloc_file = root / "allocations.json"
    if alloc_file.exists():
        allocations = json.loads(alloc_file.read_text())
    rows = []
    for bench_dir in sorted(root.iterdir()):
        if not bench_dir.is_dir() or not bench_dir.name.startswith(args.prefix):
            continue
        median = median_ns(bench_dir)
        if median is None:
            continue
        rows.append((bench_dir.name, bench_name(bench_dir), median))
    bare = next((m for d, _, m in rows if d == args.bare), None)
    if bare is None:
        print(f"no `{args.bare}` benchmark: no baseline", file=sys.stderr)
        return 1
    print("| benchmark | median | added over bare | ratio to bare | allocations per call |")
    print("|---|---:|---:|---:|---:|")
    for _, name, median in sorted(rows, key=lambda row: row[2]):
        allocs = allocations.get(name)
        allocs_text = "—" if allocs is None else f"{allocs:g}"
        print(
            f"| `{name}` | {fmt_ns(median)} | {fmt_ns(median - bare)} | "
            f"{median / bare:.1f}× | {allocs_text} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
