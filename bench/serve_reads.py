"""Benchmark: the CPU one batch of the online stylist's reads costs, by batch size.

What the reader process does for every batch of requests (``serve.context.read_inputs``: the
profiles, the wardrobes with their corrections folded in, the morning's suggestions), over the
production lake readers with their tables kept open and every data file already in memory
(steady state: ``core.delta_kept``), on the scratch lake of ``bench/serve.py`` (``--users``
users with 8 items each; Feast's online read stubbed, as there). Per batch size: the median and
p95 CPU milliseconds of a batch (``time.process_time``: pyarrow's threads count too), each
batch of users not read just before; and the three reads of a 5-user batch apart.

``--baseline-src DIR`` measures another checkout's code the same way in the same run (a
subprocess with ``PYTHONPATH=DIR``, alternated with this checkout's, ``--repeats`` times each)
and prints the ratio, e.g. against the commit before a change:

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/serve_reads.py --baseline-src /tmp/before/src
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

SIZES = (1, 5, 10, 20)
BATCHES = 60  # per size


def measure(users: int) -> dict[str, Any]:
    """CPU ms per batch (p50, p95) for each size, and the 5-user batch's reads apart."""
    with tempfile.TemporaryDirectory() as tmp:
        return _measure(Path(tmp) / "home", users)


def _measure(home: Path, users: int) -> dict[str, Any]:
    import serve as bench  # bench/serve.py: the scratch lake and the stubbed readers

    bench.seed_lake(home, users)
    from dresscode.core.config import get_settings
    from dresscode.serve.context import read_inputs

    readers = bench.bench_readers(get_settings())
    ids = [f"user-{n:04d}" for n in range(users)]
    day = date.today()
    for start in range(0, users, 20):  # every file read once and kept: the steady state
        read_inputs(readers, [(u, day, None) for u in ids[start : start + 20]])
    found: dict[str, Any] = {}
    cursor = 0

    def next_users(n: int) -> list[str]:
        nonlocal cursor
        picked = [ids[(cursor + k) % users] for k in range(n)]
        cursor += n
        return picked

    def cpu_ms(read: Any) -> float:
        started = time.process_time()
        read()
        return (time.process_time() - started) * 1000

    for size in SIZES:
        times = [
            cpu_ms(
                lambda size=size: read_inputs(readers, [(u, day, None) for u in next_users(size)])
            )
            for _ in range(BATCHES)
        ]
        found[f"batch of {size}"] = times
    parts = {
        "profiles": readers.profile_cities,
        "wardrobes": readers.wardrobes,
        "suggestions": lambda us: readers.pregenerated([(u, day) for u in us]),
    }
    for name, read in parts.items():
        found[f"5 users: {name}"] = [
            cpu_ms(lambda read=read: read(next_users(5))) for _ in range(BATCHES)
        ]
    return {key: (statistics.median(times), bench.pct(times, 0.95)) for key, times in found.items()}


def measured_in(src: str | None, users: int) -> dict[str, Any]:
    """:func:`measure` in a fresh process, with ``src`` first on the path when given."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    out = subprocess.run(
        [sys.executable, __file__, "--users", str(users), "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=601)
    parser.add_argument("--baseline-src", help="another checkout's src/ to compare with")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:
        import logging

        logging.disable(logging.WARNING)
        print(json.dumps(measure(args.users)))
        return 0
    runs: dict[str, list[dict[str, Any]]] = {"this checkout": [], "baseline": []}
    for _ in range(args.repeats):
        runs["this checkout"].append(measured_in(None, args.users))
        if args.baseline_src:
            runs["baseline"].append(measured_in(args.baseline_src, args.users))
    print(f"CPU ms per read, median of {args.repeats} run(s) ({os.cpu_count()} cores)\n")
    header = "| read | this checkout p50 / p95 |"
    if args.baseline_src:
        header += f" baseline ({args.baseline_src}) p50 / p95 | ratio p50 |"
    print(header)
    print("|---|" + "---:|" * (3 if args.baseline_src else 1))
    for key in runs["this checkout"][0]:
        ours = [statistics.median(r[key][i] for r in runs["this checkout"]) for i in (0, 1)]
        line = f"| {key} | {ours[0]:.2f} / {ours[1]:.2f} |"
        if args.baseline_src:
            base = [statistics.median(r[key][i] for r in runs["baseline"]) for i in (0, 1)]
            line += f" {base[0]:.2f} / {base[1]:.2f} | {ours[0] / base[0]:.2f} |"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
