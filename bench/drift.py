"""Benchmark: the drift report (``dresscode.monitoring.drift.detect_drift``) on large windows.

What is measured: one ``detect_drift`` call — Evidently 0.7's data drift preset with its
per-column tests over the 11 ``DRIFT_COLUMNS``, *including* the HTML rendering — for a
reference and a current window of N rows each, with every (N, case) in its own fresh
subprocess so its peak memory is its own. The frames are synthetic photo frames shaped like
``drift_frames.photo_frame``'s (lognormal bytes, a few resolutions and aspects, normal brightness,
Poisson item counts, 'none' for empty answers, gamma latencies, ~10% photos without call
timings as cached answers have); the current window has 30% dark photos (dimmer, fewer
items), so a real drift is found and rendered.

Cases:

* ``project`` — ``drift.detect_drift`` as the DAG calls it (``--max-rows``, default 0 = all
  rows);
* ``evidently-default`` — the same prepared frames through ``DataDriftPreset`` with
  Evidently's own per-column test choice (what ``detect_drift`` replaces by deciding it once).

The baseline of the ratios is the ``--baseline-rows`` run of the same case, in the same
invocation. Each case prints one JSON line: seconds of the call, peak RSS of the process
(``VmHWM``: frames + Evidently + the call), RSS just before the call, the one-off costs a
fresh task process pays before (imports, a first small call), and the verdict. Run:

    .venv/bin/python bench/drift.py --rows 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

from _capped import run_capped

CASES = ("project", "evidently-default")
CATEGORIES = ["top", "bottom", "dress", "outerwear", "footwear", "bag", "accessory"]
COLORS = ["black", "white", "navy", "grey", "beige", "red", "green", "blue", "brown", "pink"]


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- data --------------------------------------------------------------------------------------


def frame(n: int, seed: int, dark_share: float):
    """n synthetic photo rows; a ``dark_share`` of them dim, with fewer items found. Labels
    are categoricals, as ``drift_frames.photo_frame`` returns them."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    dark = rng.random(n) < dark_share
    n_items = rng.poisson(np.where(dark, 0.8, 2.5))
    empty = n_items == 0
    cached = rng.random(n) < 0.1  # answers from the cache have no call timings
    latency = rng.gamma(8, 250, n)

    def labels(names: list[str], p=None):
        codes = np.where(empty, len(names), rng.choice(len(names), n, p=p))
        return pd.Categorical.from_codes(codes, [*names, "none"])

    formats = ["JPEG", "HEIF", "PNG", "WEBP"]
    return pd.DataFrame(
        {
            "source_bytes": rng.lognormal(14.5, 0.4, n).round(),
            "source_megapixels": rng.choice([3.1, 8.0, 12.2, 48.0], n, p=[0.1, 0.3, 0.5, 0.1]),
            "source_aspect": rng.choice([0.75, 1.333, 0.5625, 1.0], n, p=[0.6, 0.2, 0.15, 0.05]),
            "brightness": np.clip(rng.normal(np.where(dark, 60, 125), 22), 0, 255).round(2),
            "source_format": pd.Categorical.from_codes(rng.choice(4, n, p=[0.55, 0.3, 0.1, 0.05]), formats),
            "n_items": n_items,
            "primary_category": labels(CATEGORIES),
            "primary_color": labels(COLORS),
            "latency_ms": np.where(cached, np.nan, latency),
            "ttft_ms": np.where(cached, np.nan, latency * rng.uniform(0.08, 0.2, n)),
            "completion_tokens": np.where(cached, np.nan, 40 + 90 * n_items + rng.integers(0, 20, n)),
        }
    )  # fmt: skip


# --- one case (child process) --------------------------------------------------------------------


def run_case(case: str, rows: int, max_rows: int, profile: int) -> dict:
    began = time.perf_counter()
    import evidently.presets  # noqa: F401

    from dresscode.monitoring import drift

    import_s = time.perf_counter() - began
    began = time.perf_counter()
    drift.detect_drift(frame(500, 1, 0.0), frame(500, 2, 0.0), min_rows=30, drift_share=0.3)
    warmup_s = time.perf_counter() - began
    began = time.perf_counter()
    reference, current = frame(rows, 11, 0.0), frame(rows, 12, 0.3)
    generate_s = time.perf_counter() - began
    rss_before = _rss_mb("VmRSS")
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    began = time.perf_counter()
    if case == "project":
        result = drift.detect_drift(
            reference, current, min_rows=30, drift_share=0.3, max_rows=max_rows
        )
        verdict = {
            "drifted": result.drifted,
            "drift_share": round(result.drift_share, 3),
            "moved": [c.column for c in result.moved()],
            "stattests": sorted({c.stattest for c in result.columns if c.stattest}),
            "html_kb": round(len(result.html) / 1024),
        }
    else:
        verdict = _evidently_default(drift, reference, current)
    seconds = time.perf_counter() - began
    if profiler is not None:
        import pstats

        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(profile)
    return {
        "case": case,
        "rows": rows,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(_rss_mb("VmHWM")),
        "rss_before_mb": round(rss_before),
        "import_s": round(import_s, 1),
        "warmup_s": round(warmup_s, 1),
        "generate_s": round(generate_s, 1),
        **verdict,
    }


def _evidently_default(drift, reference, current) -> dict:
    """The preset with Evidently choosing each column's test itself (no per_column_method)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    ref, cur = drift._prepare(reference, 0, 0), drift._prepare(current, 0, 0)
    cols = list(drift.DRIFT_COLUMNS)
    definition = DataDefinition(
        numerical_columns=[c for c in cols if drift.DRIFT_COLUMNS[c] == "num"],
        categorical_columns=[c for c in cols if drift.DRIFT_COLUMNS[c] == "cat"],
    )
    report = Report([DataDriftPreset(columns=cols, drift_share=0.3)], include_tests=True)
    snapshot = report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    html = snapshot.get_html_str(as_iframe=False)
    count = next(m for m in snapshot.dict()["metrics"] if "DriftedColumnsCount" in m["metric_name"])
    return {"drift_share": round(count["value"]["share"], 3), "html_kb": round(len(html) / 1024)}


# --- driver ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--baseline-rows", type=int, default=10_000)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--max-rows", type=int, default=0, help="detect_drift's sample cap")
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions")
    parser.add_argument("--rss-cap-mb", type=int, default=8000)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:
        result = run_case(args.case, args.one, args.max_rows, args.profile)
        print("RESULT " + json.dumps(result), flush=True)
        return

    print(f"# nproc={os.cpu_count()} load={os.getloadavg()[0]:.1f}", flush=True)
    baseline: dict[str, float] = {}
    for rows in [args.baseline_rows, *args.rows]:
        for case in args.cases:
            cmd = [sys.executable, __file__, "--case", case, "--one", str(rows)]
            cmd += ["--max-rows", str(args.max_rows), "--profile", str(args.profile)]
            began = time.perf_counter()
            returncode, stdout, stderr, capped = run_capped(cmd, args.rss_cap_mb)
            wall = time.perf_counter() - began
            if args.profile:
                print(stderr, file=sys.stderr, flush=True)
            lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
            if capped:
                print(
                    json.dumps(
                        {"case": case, "rows": rows, "killed": f"RSS > {args.rss_cap_mb} MB"}
                    )
                )
                continue
            if returncode or not lines:
                print(f"{rows} {case}: FAILED rc={returncode}\n{stderr[-3000:]}", flush=True)
                continue
            result = json.loads(lines[-1][len("RESULT ") :])
            result["process_wall_s"] = round(wall, 1)
            if rows == args.baseline_rows:
                baseline[case] = result["seconds"]
            elif baseline.get(case):
                result["x_baseline_seconds"] = round(result["seconds"] / baseline[case], 1)
                result["x_baseline_rows"] = rows // args.baseline_rows
            print(json.dumps(result), flush=True)
            print(f"# load={os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
