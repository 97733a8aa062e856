"""``dresscode`` — the project's command line (the stack, the simulator, photos, prompts)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dresscode.core import prompts


class CliError(Exception):
    """A failure the command reports in one sentence (exit 1), never as a traceback."""


def _count(raw: str) -> int:
    """A count argument: a whole number >= 0."""
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{raw} is negative; give a number >= 0")
    return value


def _positive(raw: str) -> int:
    value = _count(raw)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _known_prompt(name: str) -> str:
    """A prompt of the catalogue (``name`` or ``name@version``), else the known ones named."""
    if name.split("@", 1)[0] not in prompts.CATALOGUE:
        raise argparse.ArgumentTypeError(
            f"unknown prompt {name!r}; the known prompts are {', '.join(prompts.PROMPT_NAMES)}"
        )
    return name


def _up(args: argparse.Namespace) -> int:
    from dresscode.local import stack

    return stack.up(seed_photos=args.photos)


def _down(args: argparse.Namespace) -> int:
    from dresscode.local import stack

    return stack.down()


def _status(args: argparse.Namespace) -> int:
    from dresscode.local import stack

    return stack.status()


def _serve(args: argparse.Namespace) -> int:
    import logging

    from dresscode.serve import main as serve

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve.run(args.host, args.port)
    return 0


def _leak_scan(args: argparse.Namespace) -> int:
    from dresscode.local import stack

    scanned, found = stack.leak_scan(stack.Ports.from_env())
    for finding in found:
        print(f"LEAK {finding}")
    print(
        f"scanned {scanned} files of logs, alerts and the lake under {stack.home()}: {len(found)} findings"
    )
    return 1 if found else 0


def _seed(args: argparse.Namespace) -> int:
    from dresscode.local import seed, stack

    result = seed.seed(
        n_photos=args.photos,
        script_path=args.script or stack.sim_script(),
        start=args.start,
        shift=args.shift,
    )
    what = f"{args.shift}-shifted " if args.shift else ""
    print(
        f"seeded {result.new} new {what}uploads into the landing area ({result.skipped} already ingested)"
    )
    return 0


def _read_capped(path: Path, cap: int) -> bytes:
    """Up to ``cap + 1`` bytes of ``path``: enough to tell "too large" without reading it all
    (``/dev/zero`` or a 50 GB file must not exhaust memory). Raises CliError for what is not a
    readable regular file."""
    if not path.exists():
        raise CliError(f"{path}: no such file")
    if path.is_dir():
        raise CliError(f"{path}: is a directory, not a photo")
    try:
        with path.open("rb") as handle:
            return handle.read(cap + 1)
    except OSError as exc:
        raise CliError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _writable_output(output: Path, source: Path) -> None:
    """Refuse an output that would overwrite the input or that cannot be written."""
    for path in (source, output):
        if "\x00" in str(path):  # the OS refuses it with a ValueError, not an OSError
            raise CliError(f"{str(path)!r}: a file name cannot contain a NUL byte")
    if output.exists() and source.exists() and output.resolve() == source.resolve():
        raise CliError(f"{output}: is the input; write the normalized photo to another file")
    if output.is_dir():
        raise CliError(f"{output}: is a directory; name the output file")
    if not output.parent.is_dir():
        raise CliError(f"{output}: its folder {output.parent} does not exist")


def _normalize(args: argparse.Namespace) -> int:
    from dresscode.core.config import get_settings
    from dresscode.ingest import photos as images

    settings = get_settings()
    source, output = Path(args.input), Path(args.output)
    _writable_output(output, source)
    raw = _read_capped(source, settings.image_max_bytes)
    if len(raw) > settings.image_max_bytes:
        print(
            f"rejected: too_large: {source} is larger than the "
            f"{settings.image_max_bytes / 1e6:.1f} MB limit (DRESSCODE_IMAGE_MAX_BYTES)",
            file=sys.stderr,
        )
        return 2
    try:
        photo = images.normalize(
            raw,
            filename=source.name,
            long_edge=args.long_edge or settings.image_long_edge,
            quality=settings.image_jpeg_quality,
            max_bytes=settings.image_max_bytes,
            max_pixels=settings.image_max_pixels,
            allowed_formats=settings.image_formats,
            max_jpeg_scans=settings.image_max_jpeg_scans,
            max_decode_s=settings.image_max_decode_s,
        )
    except images.Rejected as rej:
        print(f"rejected: {rej.code.value}: {rej.message}", file=sys.stderr)
        return 2
    try:
        output.write_bytes(photo.jpeg)
    except OSError as exc:
        raise CliError(f"{output}: cannot be written ({exc.strerror or exc})") from None
    print(
        f"{source} ({photo.source_format} {photo.source_width}x{photo.source_height}, {photo.source_bytes} B) -> "
        f"{output} (JPEG {photo.width}x{photo.height}, {len(photo.jpeg)} B, sha256 {photo.sha256[:12]})"
    )
    return 0


def _digitize(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from dresscode.ingest import digitize
    from dresscode.ingest.rejects import Rejected

    photo = Path(args.photo)
    _read_capped(photo, 0)  # exists, is a file, is readable: one sentence otherwise
    try:
        items = asyncio.run(digitize.digitize_file(photo, blueprint_ref=args.prompt))
    except Rejected as rej:  # as `dresscode normalize` says it: exit 2 with the reason code
        print(f"rejected: {rej.code.value}: {rej.message}", file=sys.stderr)
        return 2
    except digitize.DigitizeFailed as exc:  # no answer is not "no items": never print []
        raise CliError(str(exc)) from None
    print(json.dumps(items, indent=2))  # [] here means the model saw no garment
    return 0


def _eval(args: argparse.Namespace) -> int:
    from dresscode.registry.evaluation import digitizer as evaluation

    result = evaluation.evaluate_prompt(args.prompt)
    headline = ", ".join(
        f"{k} {v:.3f}" for k, v in result.metrics.items() if not k.startswith("n_")
    )
    print(f"{result.ref} on {result.examples} golden examples: {headline}")
    against = f" (baseline {result.baseline_ref})" if result.baseline_ref else ""
    verdict = "PASSED" if result.verdict.passed else "FAILED: " + "; ".join(result.verdict.reasons)
    print(f"gate{against}: {verdict}")
    if result.judges != "not run":
        print(f"LLM judges: {result.judges}")
    print(f"MLflow run {result.mlflow_run_id} (experiment {evaluation.EXPERIMENT})")
    return 0 if result.verdict.passed else 1


def _prompts(args: argparse.Namespace) -> int:
    """``dresscode prompts list|sync|promote|rollback|unblock`` for the engineer on call."""
    import getpass

    from dresscode.registry import prompt_registry as registry

    actor = args.actor or getpass.getuser()
    if args.action == "sync":
        for result in registry.sync(args.name):
            state = "registered" if result.created else "already registered"
            print(
                f"{result.name} v{result.git_version}: {state} (MLflow version {result.mlflow_version})"
            )
        return 0
    if args.action == "list":
        for info in registry.versions(args.name):
            aliases = ", ".join(info.aliases) or "-"
            print(
                f"{info.name} v{info.git_version}  aliases: {aliases:28}  gate: {info.gate or 'never evaluated'}"
            )
            if info.block is not None:
                print(f"    BLOCKED: {info.block.describe()}")
        return 0
    if not args.reason:
        print(
            f"error: {args.action} needs --reason (it is recorded with who and when)",
            file=sys.stderr,
        )
        return 2
    if args.action == "promote":
        # People promote only what passed its golden-set gate; rollback checks the same.
        wanted = str(args.version or "").lstrip("v")
        found = next(
            (v for v in registry.versions(args.name) if str(v.git_version) == wanted), None
        )
        if found is None or found.gate != "passed":
            why = "no such version" if found is None else f"gate: {found.gate or 'never evaluated'}"
            print(
                f"error: {args.name} v{wanted} has not passed its gate ({why}); not promoted",
                file=sys.stderr,
            )
            return 1
        done = registry.promote(args.name, args.version, actor=actor, reason=args.reason)
    elif args.action == "unblock":
        if not args.version:
            print("error: unblock needs the version to let back (e.g. 3)", file=sys.stderr)
            return 2
        print(registry.unblock(args.name, args.version, actor=actor, reason=args.reason).describe())
        return 0
    else:
        done = registry.rollback(
            args.name, args.version or "previous", actor=actor, reason=args.reason
        )
    registry.audit(done)
    print(done.describe())
    return 0


def _golden_accept(args: argparse.Namespace) -> int:
    """``dresscode golden accept``: copy reviewed feedback candidates into the golden set."""
    from dresscode.registry import golden

    if args.all == bool(args.shas):
        pending = golden.latest_candidates()
        pending = pending[pending["status"] == golden.PENDING] if not pending.empty else pending
        for row in pending.to_dict("records"):
            print(f"{row['image_sha256']}  {row['user_id']}  {row['n_corrections']} corrections")
        print(
            f"{len(pending)} pending; name candidates by SHA (or a prefix), or --all",
            file=sys.stderr,
        )
        return 2
    try:
        done = golden.accept_candidates(
            args.shas, all_pending=args.all, golden_dir=args.golden_dir, set_name=args.set_name
        )
    except golden.GoldenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for golden_id in done.accepted:
        print(f"accepted {golden_id} into {done.golden_dir}")
    for sha in done.already:
        print(f"{sha[:12]} was already accepted; nothing to do")
    return 0


def _delta_table(name: str) -> str:
    """A Delta table of the lake, else the Delta tables named."""
    from dresscode.core import delta

    if not delta.is_delta(name):
        raise argparse.ArgumentTypeError(
            f"{name!r} is not a Delta table; the Delta tables are {', '.join(delta.TABLES)}"
        )
    return name


def _lake_migrate(args: argparse.Namespace) -> int:
    """``dresscode lake migrate``: an older release's Parquet parts into the Delta tables."""
    from dresscode.local import lake_migrate

    return lake_migrate.command(args.tables, dry_run=args.dry_run)


def _drift_reproduce(args: argparse.Namespace) -> int:
    """``dresscode drift reproduce``: a drift report computed again at its table versions."""
    from dresscode.monitoring import reproduce

    return reproduce.command(args.report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dresscode", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser(
        "up", help="start the local stack, seed photos, run the pipeline, print a summary"
    )
    up.add_argument(
        "--photos", type=_count, default=48, help="synthetic photos to seed (default 48)"
    )
    up.set_defaults(func=_up)
    sub.add_parser("down", help="stop what `up` started").set_defaults(func=_down)
    sub.add_parser("status", help="show the parts of the local stack").set_defaults(func=_status)

    sub.add_parser(
        "leak-scan",
        help="scan the stack's logs, alerts and lake for secrets, credentials, image bytes and GPS positions",
    ).set_defaults(func=_leak_scan)

    sub.add_parser("sim", help="run the vLLM simulator (dresscode sim --help for its options)")

    serve_cmd = sub.add_parser("serve", help="run the online stylist (POST /v1/outfits, SSE)")
    serve_cmd.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve_cmd.add_argument("--port", type=int, default=None, help="default DRESSCODE_SERVE_PORT")
    serve_cmd.set_defaults(func=_serve)

    seed = sub.add_parser(
        "seed", help="write synthetic photos (and bad files) into the landing area"
    )
    seed.add_argument("--photos", type=_count, default=48)
    seed.add_argument(
        "--start", type=_count, default=0, help="first photo seed (new photos: use a new range)"
    )
    seed.add_argument(
        "--script", type=Path, default=None, help="simulator response script to append to"
    )
    seed.add_argument(
        "--shift",
        choices=("dark", "lowres", "format"),
        default=None,
        help="write a drifted batch: dark photos, low-resolution photos, or everything as PNG",
    )
    seed.set_defaults(func=_seed)

    norm = sub.add_parser("normalize", help="validate, orient, downscale and strip one photo")
    norm.add_argument("input")
    norm.add_argument("output")
    norm.add_argument("--long-edge", type=_positive, default=None)
    norm.set_defaults(func=_normalize)

    ev = sub.add_parser(
        "eval", help="evaluate a digitizer blueprint on the golden set and record the gate"
    )
    ev.add_argument(
        "prompt",
        type=_known_prompt,
        help="NAME, NAME@VERSION or NAME@ALIAS (default alias: production)",
    )
    ev.set_defaults(func=_eval)

    prompts_cmd = sub.add_parser(
        "prompts", help="the prompt registry: list, sync, promote, rollback, unblock"
    )
    prompts_cmd.add_argument("action", choices=["list", "sync", "promote", "rollback", "unblock"])
    prompts_cmd.add_argument(
        "name", type=_known_prompt, help="prompt name, e.g. wardrobe-digitizer"
    )
    prompts_cmd.add_argument(
        "version",
        nargs="?",
        help="git version (promote, unblock), or rollback target (default: previous)",
    )
    prompts_cmd.add_argument("--reason", help="why (required for promote, rollback and unblock)")
    prompts_cmd.add_argument("--actor", help="who (default: the current user)")
    prompts_cmd.set_defaults(func=_prompts)

    golden = sub.add_parser("golden", help="the wardrobe golden set")
    golden_sub = golden.add_subparsers(dest="golden_command", required=True)
    accept = golden_sub.add_parser(
        "accept", help="copy golden candidates (photos with corrected labels) into the golden set"
    )
    accept.add_argument("shas", nargs="*", metavar="SHA", help="photo sha256 or a unique prefix")
    accept.add_argument("--all", action="store_true", help="accept every pending candidate")
    accept.add_argument(
        "--golden-dir", type=Path, default=None, help="default: include/golden/wardrobe"
    )
    accept.add_argument("--set", dest="set_name", default="feedback", help="labels-<set>.jsonl")
    accept.set_defaults(func=_golden_accept)

    lake_cmd = sub.add_parser("lake", help="the lake's tables")
    lake_sub = lake_cmd.add_subparsers(dest="lake_command", required=True)
    migrate = lake_sub.add_parser(
        "migrate",
        help="commit an older release's Parquet parts to the Delta tables, verify, move them "
        "to <lake>/_migrated/ (idempotent; run with the stack stopped)",
    )
    migrate.add_argument(
        "--table",
        dest="tables",
        action="append",
        type=_delta_table,
        metavar="NAME",
        help="only this table (repeatable; default: every Delta table)",
    )
    migrate.add_argument(
        "--dry-run", action="store_true", help="say what would be done; change nothing"
    )
    migrate.set_defaults(func=_lake_migrate)

    drift_cmd = sub.add_parser("drift", help="drift reports")
    drift_sub = drift_cmd.add_subparsers(dest="drift_command", required=True)
    again = drift_sub.add_parser(
        "reproduce",
        help="compute a drift report again on the data it read (the Delta table versions it "
        "recorded); exit 1 when the result differs",
    )
    again.add_argument(
        "report", help="the report's JSON (reports/drift/date=D/<key>.json) or its MLflow run id"
    )
    again.set_defaults(func=_drift_reproduce)

    dig = sub.add_parser(
        "digitize", help="digitize one photo with the model endpoint (dresscode_llm)"
    )
    dig.add_argument("photo")
    dig.add_argument(
        "--prompt", type=_known_prompt, default=prompts.DIGITIZER.name, help="prompt name[@version]"
    )
    dig.set_defaults(func=_digitize)

    near = sub.add_parser(
        "similar", help="the user's items most like one item (its description's vector)"
    )
    near.add_argument("item_id")
    near.add_argument("-k", type=_positive, default=5, help="how many (default 5)")
    near.add_argument("--json", action="store_true", help="one JSON object per line")
    near.set_defaults(func=_similar)
    return parser


def _similar(args: argparse.Namespace) -> int:
    import json

    from dresscode.features.embeddings import similar

    found = similar.similar_items(args.item_id, k=args.k)
    if not found and not similar.has_vector(args.item_id):
        raise CliError(
            f"item {args.item_id!r} has no vector: not an item id, or not embedded yet "
            "(the item_embeddings DAG embeds new items hourly and after each ingest)"
        )
    for n in found:
        if args.json:
            row = {"item_id": n.item_id, "similarity": round(1 - n.distance, 4)}
            print(json.dumps(row | {"category": n.category, "colour": n.colour}))
        else:
            print(f"{n.item_id}  {1 - n.distance:.3f}  {n.category:10} {n.colour}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sim"]:
        # The simulator owns its flags (`dresscode sim --help` shows them).
        from dresscode.sim import main as sim_main

        return sim_main(argv[1:])
    args = build_parser().parse_args(argv)
    from dresscode.core.config import SettingsError
    from dresscode.llm.blueprints import BlueprintError
    from dresscode.local.lake_migrate import MigrationFailed
    from dresscode.local.stack import StackError
    from dresscode.registry.prompt_registry import RegistryError

    try:
        return args.func(args)
    except (
        CliError,
        SettingsError,
        StackError,
        RegistryError,
        BlueprintError,
        MigrationFailed,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """Console entry point: run the command, flush, and exit without interpreter teardown.

    Native thread pools (libheif/x265 via pillow-heif, Arrow) sometimes abort with
    "terminate called without an active exception" while the interpreter tears down (seen
    once in five `make up` runs, after all work was done and printed). Every file is closed
    by then, so skipping the teardown loses nothing and keeps the exit code honest.
    """
    import logging
    import os

    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
