"""Convert an ImageFolder tree (or a data_list) into a MindRecord dataset, atomically.

    python tools/convert_to_mindrecord.py --data_dir /data/imagenet/train --output /fast/mr/train.mindrecord --shards 8
    python train.py --dataset_format mindrecord --data_dir /fast/mr/train.mindrecord
    python eval.py --dataset_format mindrecord --data_dir /fast/mr/val.mindrecord --pretrained CKPT

Writes ``PREFIX0 .. PREFIX{N-1}`` (+ ``.db`` index files; ``PREFIX`` alone for one shard),
``PREFIX.class_index.json`` and, last, ``PREFIX.meta.json`` (see ``src/data/mindrecord.py``). Every file is first
decoded once by ``src.data.verify`` in isolated worker processes (``--workers``; cached in the verification
manifest beside the data, ``--manifest none`` for none; ``--no_verify`` for the cheap check only); unusable
files (and images above --max_image_pixels) are left out, named in the log and listed in the meta file. An
output that exists is replaced only with --overwrite and only if an earlier conversion wrote it (a user's file,
an input image or a device is refused). The shards are written into a hidden
temporary folder beside PREFIX and moved into place at the end, so an interrupted conversion never leaves a
dataset that looks complete (run it again; stale temporary folders are removed). A progress bar shows on stderr.

Exit status: 0 done, 2 for a bad option or folder (the message names it).
"""
import argparse
import logging
import os
import sys

os.environ.setdefault("GLOG_v", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", required=True, help="ImageFolder root (or the root of --data_list paths)")
    p.add_argument("--output", required=True, help="output PREFIX, e.g. /fast/mr/train.mindrecord")
    p.add_argument("--shards", type=int, default=1, help="number of MindRecord files (1..1000)")
    p.add_argument("--data_list", default="", help="text file of 'relative/path label' lines instead of folders")
    p.add_argument("--class_index", default="", help="class_index.json to label the folders with (default: the "
                                                     "sorted folder names)")
    p.add_argument("--workers", type=int, default=0, help="decoder processes of the check (0: the cores)")
    p.add_argument("--manifest", default="", help="verification manifest (default: beside the data); 'none'")
    p.add_argument("--no_verify", action="store_true", help="skip the full decode check (cheap check only)")
    p.add_argument("--max_image_pixels", type=int, default=100_000_000,
                   help="images declaring more pixels are left out undecoded (train.py's max_image_pixels)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at PREFIX")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from src.utils.paths import display_name, harden_log_handlers
    harden_log_handlers(logging.getLogger())
    log = logging.getLogger("convert_to_mindrecord")

    from src.data.convert import convert_to_mindrecord
    from src.data.verify import VerifyError
    from src.data import load_class_index
    from src.errors import UserError
    try:
        class_to_idx = load_class_index(args.class_index) if args.class_index else None
        manifest = None if args.manifest.lower() == "none" else args.manifest
        info = convert_to_mindrecord(args.data_dir, args.output, args.shards, data_list=args.data_list,
                                     class_to_idx=class_to_idx, verify=not args.no_verify, workers=args.workers,
                                     manifest=manifest, overwrite=args.overwrite, progress=not args.quiet, log=log,
                                     max_pixels=args.max_image_pixels)
    except (UserError, VerifyError) as exc:
        print(f"error: {display_name(str(exc))}", file=sys.stderr)
        return 2
    used = sum(os.stat(q).st_blocks * 512 for f in info.files for q in (f, f + ".db"))
    print(f"{info.num_rows} images, {len(info.class_to_idx)} classes, {len(info.skipped)} left out -> "
          f"{len(info.files)} shard file(s) at {info.prefix} ({used / 1e6:.1f} MB on disk); class index "
          f"{info.prefix}.class_index.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
