"""Benchmark photo normalization: dresscode.ingest.photos.normalize against a naive Pillow pipeline.

Usage (from the repo root):

    .venv/bin/python bench/normalize.py --photos 8 --repeat 3

Generates ``--photos`` synthetic 12 MP (4000x3000) wardrobe photos with dresscode.local.samples and
encodes each as JPEG (q90), WebP (q90) and HEIC (512 px grid tiles, like an iPhone), all with
EXIF/GPS/XMP. Then, in one process, times per photo:

* ``project``: ``dresscode.ingest.photos.normalize`` (768 px long edge, JPEG q85);
* ``naive``: ``Image.open`` -> ``ImageOps.exif_transpose`` -> ``resize`` (LANCZOS, 768 px)
  -> ``save`` JPEG q85, the pipeline one writes first;
* ``floor`` (JPEG): a ``draft`` decode at 1/8 scale plus one 1 MP JPEG encode, i.e. close to
  the least work any JPEG pipeline can do;
* ``hevc decode`` (HEIC): pillow-heif decoding the primary image, nothing else;
* ``project, Pillow fallback`` (WebP): ``normalize`` without the libwebp scaler, as where
  libwebp cannot be loaded through ctypes.

Speed is CPU time (``time.process_time``), so "photos/s per core" stays honest when a decoder
uses threads (libheif does); wall time is shown too. For each photo the fastest of
``--repeat`` runs counts (the least disturbed by whatever else the machine runs). Peak memory
is the high-water mark of RSS above the baseline, measured in a fresh process per
(format, method) that normalizes the photos one by one. ``--quality`` adds a table of
downscaling variants: PSNR of their output against a full-size decode + LANCZOS reference (on
the first 2 photos) and their speed, timed like the rest.

Prints markdown; copy it into docs/benchmarks.md with the exact command.
"""

from __future__ import annotations

import argparse
import io
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageOps

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src"))

from dresscode.ingest import photos as images
from dresscode.local import samples

SIZE = (4000, 3000)
LONG_EDGE = 768
QUALITY = 85
FORMATS = ("JPEG", "WEBP", "HEIC")
TARGETS = {  # (numerator, denominator, kind, target): a ratio of CPU times per photo
    "JPEG naive/project (speed-up)": ("JPEG naive", "JPEG project", ">=", 3.5),
    "JPEG project/floor (overhead)": ("JPEG project", "JPEG floor", "<=", 1.6),
    "WEBP naive/project (speed-up)": ("WEBP naive", "WEBP project", ">=", 2.0),
    "HEIC project/hevc decode (overhead)": ("HEIC project", "HEIC hevc decode", "<=", 1.3),
}


# ---- the pipelines under test --------------------------------------------------------------


def project(raw: bytes) -> bytes:
    return images.normalize(raw, long_edge=LONG_EDGE, quality=QUALITY).jpeg


def naive(raw: bytes) -> bytes:
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(raw)))
    if img.mode != "RGB":
        img = img.convert("RGB")
    img = img.resize(images._fit(*img.size, LONG_EDGE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def project_without_libwebp(raw: bytes) -> bytes:
    """``normalize`` on its fallback path, as on a system where libwebp cannot be loaded."""
    saved = images._libwebp
    images._libwebp = lambda: None
    try:
        return project(raw)
    finally:
        images._libwebp = saved


_ONE_MP = samples.wardrobe_photo(7, size=(1155, 866))[0]  # photo-like, so it encodes like one


def floor(raw: bytes) -> bytes:
    img = Image.open(io.BytesIO(raw))
    img.draft("RGB", (img.width // 8, img.height // 8))
    img.load()
    out = io.BytesIO()
    _ONE_MP.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def hevc_decode(raw: bytes) -> bytes:
    import pillow_heif

    return bytes(pillow_heif.open_heif(raw, convert_hdr_to_8bit=True)[0].data[:16])


METHODS: dict[str, dict[str, Callable[[bytes], bytes]]] = {
    "JPEG": {"project": project, "naive": naive, "floor": floor},
    "WEBP": {
        "project": project,
        "naive": naive,
        "project, Pillow fallback": project_without_libwebp,
    },
    "HEIC": {"project": project, "naive": naive, "hevc decode": hevc_decode},
}


# ---- inputs --------------------------------------------------------------------------------


def make_photos(n: int) -> dict[str, list[bytes]]:
    """n photos per format; every fourth one is stored rotated (EXIF orientation 6)."""
    photos: dict[str, list[bytes]] = {fmt: [] for fmt in FORMATS}
    for i in range(n):
        img, _ = samples.wardrobe_photo(1000 + i, size=SIZE)
        orientation = 6 if i % 4 == 3 else 1
        for fmt in FORMATS:
            photos[fmt].append(samples.encode(img, fmt, orientation=orientation))
    return photos


# ---- measurements --------------------------------------------------------------------------


@dataclass
class Timing:
    cpu_ms: float  # per photo, mean over photos of the best of the repeats
    wall_ms: float


def time_method(fn: Callable[[bytes], bytes], photos: list[bytes], repeat: int) -> Timing:
    fn(photos[0])  # warm-up: lazy imports, plugin registration, libwebp loading
    best_cpu = [math.inf] * len(photos)
    best_wall = [math.inf] * len(photos)
    for _ in range(repeat):
        for i, raw in enumerate(photos):
            c0, w0 = time.process_time(), time.perf_counter()
            fn(raw)
            best_cpu[i] = min(best_cpu[i], time.process_time() - c0)
            best_wall[i] = min(best_wall[i], time.perf_counter() - w0)
    return Timing(1000 * statistics.fmean(best_cpu), 1000 * statistics.fmean(best_wall))


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_rss_child(fmt: str, method: str, photos: list[bytes]) -> float:
    """Runs in a fresh process: peak RSS above the baseline while handling one photo at a time."""
    fn = METHODS[fmt][method]
    tiny = samples.encode(samples.wardrobe_photo(1, size=(64, 48))[0], fmt)
    fn(tiny)  # load libraries and plugins before the baseline
    baseline = _rss_kib("VmRSS")
    for raw in photos:
        fn(raw)
    return (_rss_kib("VmHWM") - baseline) / 1024


def peak_rss_mb(fmt: str, method: str, photos: list[bytes]) -> float | None:
    if not os.path.exists("/proc/self/status"):
        return None  # Linux only
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_peak_rss_child, (fmt, method, photos))


# ---- quality -------------------------------------------------------------------------------


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    squares = sum(
        count * value * value
        for band in diff.split()
        for value, count in enumerate(band.histogram())
    )
    mse = squares / (a.width * a.height * 3)
    return 99.0 if mse == 0 else 10 * math.log10(255 * 255 / mse)


def _patched(patch: dict[str, object], fn: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """``fn`` run with some module-level knobs of dresscode.ingest.photos temporarily replaced."""

    def run(raw: bytes) -> bytes:
        saved = {name: getattr(images, name) for name in patch}
        try:
            for name, value in patch.items():
                setattr(images, name, value)
            return fn(raw)
        finally:
            for name, value in saved.items():
                setattr(images, name, value)

    return run


def quality_table(photos: dict[str, list[bytes]], repeat: int) -> list[str]:
    """PSNR against a full decode + LANCZOS (unencoded) reference, and speed, per variant."""
    rows = [
        "| input | variant | PSNR vs reference (dB) | CPU ms/photo |",
        "|---|---|---:|---:|",
    ]
    lanczos, hamming = Image.Resampling.LANCZOS, Image.Resampling.HAMMING
    variants: list[tuple[str, str, dict[str, object]]] = [
        ("JPEG", "project: DCT-scaled decode x1 + BICUBIC", {}),
        ("JPEG", "DCT-scaled decode x1 + HAMMING", {"_RESAMPLE": hamming}),
        ("JPEG", "DCT-scaled decode x1 + LANCZOS", {"_RESAMPLE": lanczos}),
        ("JPEG", "DCT-scaled decode x2 + LANCZOS", {"_JPEG_DRAFT_FACTOR": 2, "_RESAMPLE": lanczos}),
        ("WEBP", "project: libwebp scaler to 768 px", {}),
        ("WEBP", "Pillow full decode + reduce + BICUBIC", {"_libwebp": lambda: None}),
        ("HEIC", "project: reduce + BICUBIC (reducing_gap 2.0)", {}),
        ("HEIC", "reduce + LANCZOS (reducing_gap 2.0)", {"_RESAMPLE": lanczos}),
        (
            "HEIC",
            "LANCZOS (reducing_gap 3.0, no reduce here)",
            {"_RESAMPLE": lanczos, "_REDUCING_GAP": 3.0},
        ),
    ]
    references: dict[str, list[Image.Image]] = {}
    for fmt in FORMATS:
        references[fmt] = []
        for raw in photos[fmt][:2]:
            ref = ImageOps.exif_transpose(Image.open(io.BytesIO(raw))).convert("RGB")
            references[fmt].append(
                ref.resize(images._fit(*ref.size, LONG_EDGE), Image.Resampling.LANCZOS)
            )
    encoded_refs = []
    for ref in references["JPEG"]:
        out = io.BytesIO()
        ref.save(out, "JPEG", quality=QUALITY)
        encoded_refs.append(psnr(Image.open(out), ref))
    rows.append(
        "| JPEG | reference, only encoded at q85 (the ceiling for any pipeline) | "
        f"{statistics.fmean(encoded_refs):.1f} | n/a |"
    )
    for fmt, label, patch in variants:
        fn = _patched(patch, project)
        scores = [
            psnr(Image.open(io.BytesIO(fn(raw))), ref)
            for raw, ref in zip(photos[fmt], references[fmt], strict=False)
        ]
        timing = time_method(fn, photos[fmt], repeat)
        rows.append(f"| {fmt} | {label} | {statistics.fmean(scores):.1f} | {timing.cpu_ms:.1f} |")
    return rows


# ---- report --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=8, help="photos per format (default 8)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per photo, best counts")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS processes")
    parser.add_argument(
        "--quality", action="store_true", help="add PSNR and speed of downscaling variants"
    )
    args = parser.parse_args()

    t0 = time.perf_counter()
    photos = make_photos(args.photos)
    made = time.perf_counter() - t0
    sizes = {fmt: statistics.fmean(len(p) for p in photos[fmt]) / 1e6 for fmt in FORMATS}
    webp = "libwebp scaler" if images._libwebp() else "Pillow (libwebp not loadable)"
    print(
        f"{args.photos} photos per format, {SIZE[0]}x{SIZE[1]}, mean size "
        + ", ".join(f"{fmt} {mb:.2f} MB" for fmt, mb in sizes.items())
        + f"; generated in {made:.0f} s. Python {platform.python_version()}, "
        f"Pillow {Image.__version__}, {os.cpu_count()} CPUs, WebP path: {webp}.\n"
    )

    results: dict[str, Timing] = {}
    print("| input | pipeline | CPU ms/photo | photos/s per core | wall ms/photo | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|")
    for fmt in FORMATS:
        for method, fn in METHODS[fmt].items():
            timing = time_method(fn, photos[fmt], args.repeat)
            results[f"{fmt} {method}"] = timing
            peak = None if args.no_memory else peak_rss_mb(fmt, method, photos[fmt])
            print(
                f"| {fmt} | {method} | {timing.cpu_ms:.1f} | {1000 / timing.cpu_ms:.1f} | "
                f"{timing.wall_ms:.1f} | {'n/a' if peak is None else f'{peak:.0f}'} |",
                flush=True,
            )

    print("\n| ratio (CPU time per photo) | value | target | met |")
    print("|---|---:|---:|---|")
    for name, (num, den, kind, target) in TARGETS.items():
        value = results[num].cpu_ms / results[den].cpu_ms
        met = value >= target if kind == ">=" else value <= target
        print(f"| {name} | {value:.2f}x | {kind} {target}x | {'yes' if met else 'NO'} |")

    if args.quality:
        print()
        print("\n".join(quality_table(photos, args.repeat)))


if __name__ == "__main__":
    main()
