"""Decode every image of a dataset once, in isolated worker processes, and cache the result in a manifest.

    python tools/verify_dataset.py --data_dir /data/imagenet/train --workers 8
    python tools/verify_dataset.py --data_dir /data/imagenet/val --manifest /tmp/val.jsonl --json report.json
    python tools/verify_dataset.py --data_dir ROOT --data_list train.txt

Lists the files as the pipeline does (an ImageFolder tree, or a ``data_list`` of ``relative/path label`` lines),
then runs ``src.data.verify.verify_images``: every file is decoded by MindSpore's decoder (``--decoder pil``:
by PIL) in ``--workers`` processes; a file that crashes or hangs the decoder kills only its worker and is named;
an image whose header declares more than ``--max_image_pixels`` pixels is skipped undecoded.
The manifest (default ``DATA_DIR/.cspdarknet53_verified.jsonl``, or a per-folder file in
``~/.cache/cspdarknet53/verify/`` when the data folder is read-only; ``--manifest none``: no cache) lets later
runs, training included, skip files already checked (same path, size and mtime).

Prints one line per unusable file and a summary; ``--json`` writes every file's result (names that are not
UTF-8 as ``\\udcXX`` escapes, lossless). Exit status 0, or 1 with ``--fail_on_unusable`` when a file is
unusable, 2 for a bad option or folder.
"""
import argparse
import logging
import os
import sys
import time

os.environ.setdefault("GLOG_v", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from src.data.checks import DEFAULT_MAX_PIXELS  # noqa: E402


def list_files(data_dir, data_list=""):
    """(absolute paths, where) with the pipeline's own listing rules."""
    from src.data.listing import list_image_folder, read_data_list

    if data_list:
        rel, _ = read_data_list(data_list, data_dir)
        where = f"{data_list} (root {data_dir or '.'})"
    else:
        _, rel, _ = list_image_folder(data_dir, None)
        where = data_dir
    return [os.path.join(data_dir, p) if data_dir else p for p in rel], where


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", required=True, help="ImageFolder root (or the root of --data_list paths)")
    p.add_argument("--data_list", default="", help="text file of 'relative/path label' lines")
    p.add_argument("--workers", type=int, default=0, help="decoder processes (0: the cores available)")
    p.add_argument("--manifest", default="", help="manifest file (default: beside the data); 'none' for no cache")
    p.add_argument("--decoder", default="mindspore", choices=["mindspore", "pil"])
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per file before its worker is killed")
    p.add_argument("--max_image_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="larger images are skipped undecoded (train.py's max_image_pixels)")
    p.add_argument("--json", default="", help="write every file's result here")
    p.add_argument("--fail_on_unusable", action="store_true", help="exit 1 when a file is unusable")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    log = logging.getLogger("verify_dataset")

    from src.data.reader import cap_workers
    from src.data.verify import VerifyError, default_manifest_path, report_unusable, summarize, verify_images
    from src.errors import DatasetError, UserError
    from src.utils.fileio import write_json_atomic
    from src.utils.paths import display_name

    try:
        paths, where = list_files(args.data_dir, args.data_list)
    except DatasetError as exc:
        print(f"error: {display_name(str(exc))}", file=sys.stderr)
        return 2
    manifest = None if args.manifest.lower() == "none" else (args.manifest or default_manifest_path(args.data_dir))
    t0 = time.perf_counter()
    c0 = os.times()
    stats = {}
    try:
        results = verify_images(paths, workers=cap_workers(args.workers, "--workers"), manifest=manifest,
                                timeout_s=args.timeout, root=args.data_dir, decoder=args.decoder,
                                max_pixels=args.max_image_pixels, progress=not args.quiet, stats=stats)
    except (VerifyError, UserError) as exc:
        print(f"error: {display_name(str(exc))}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    c1 = os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system) + stats.get("cpu_s", 0.0)  # + the decoder workers
    report_unusable(results, log, where)
    counts = summarize(results)
    n = max(1, len(results))
    crashed = sum(1 for r in results if r.reason.startswith("the decoder crashed"))
    timed_out = sum(1 for r in results if r.reason.startswith("the decoder did not finish"))
    print(f"{len(results)} files under {display_name(where)}: {counts['ok']} ok, {counts['convert']} decoded "
          f"through PIL, {counts['skip']} unusable ({crashed} crashed the decoder, {timed_out} timed out); {stats.get('checked', 0)} checked, {stats.get('cached', 0)} "
          f"from the manifest; {wall:.1f} s wall, {cpu:.1f} CPU-s with the workers ({wall / n * 1000:.2f} s and "
          f"{cpu / n * 1000:.2f} CPU-s per 1000 files)")
    if manifest:
        print(f"manifest: {display_name(manifest)}")
    if args.json:
        write_json_atomic({"data_dir": args.data_dir, "data_list": args.data_list, "decoder": args.decoder,
                           "counts": counts, "stats": stats,
                           "files": [{"path": r.path, "status": r.status, "reason": r.reason}
                                     for r in results]}, args.json, indent=1, ensure_ascii=False)
    return 1 if args.fail_on_unusable and counts["skip"] else 0


if __name__ == "__main__":
    sys.exit(main())
