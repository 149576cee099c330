"""Images per second of the MindRecord reader against the folder reader, on the same images (no model).

    python tools/benchmark_mindrecord.py --data_dir /tmp/bench_photos --workers 1 2 --image_size 224
    python tools/benchmark_mindrecord.py --data_dir DIR --mindrecord /fast/x.mindrecord   # an existing conversion

Converts ``--data_dir`` to MindRecord first (``--shards``, into a temporary folder, unless ``--mindrecord`` names an
existing one), then for each reader, mode and worker count builds the real pipeline (``src.dataset.create_dataset``
or ``src.data.mindrecord.create_mindrecord_dataset``: the same transforms), skips the first batch, times
``--batches`` batches and prints the median over ``--repeats`` runs in images per wall second and per CPU second
of the process. Readers alternate run by run so that a change in the machine's load hits both alike.
``--cold`` evicts the files each reader reads from the page cache before each of its runs (posix_fadvise).
"""
import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("GLOG_v", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _cpu():
    t = os.times()
    return t.user + t.system


def time_bundle(bundle, batches):
    epochs = math.ceil((batches + 1) / bundle.steps_per_epoch)
    done, images, t0, c0 = -1, 0, None, None
    for e in range(epochs):
        if bundle.sampler is not None:
            bundle.sampler.set_epoch(e)
        it = bundle.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)
        for x, _ in it:
            done += 1
            if done == 0:
                t0, c0 = time.perf_counter(), _cpu()
                continue
            images += x.shape[0]
            if done >= batches:
                break
        it.stop()
        if done >= batches:
            break
    return images / (time.perf_counter() - t0), images / max(1e-9, _cpu() - c0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", required=True)
    p.add_argument("--mindrecord", default="", help="an existing conversion of --data_dir (default: convert now)")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--modes", nargs="+", default=["train", "eval"], choices=["train", "eval"])
    p.add_argument("--cold", action="store_true",
                   help="evict the image files / shard files from the page cache before each run")
    args = p.parse_args(argv)
    import logging
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from src.data.mindrecord import convert_to_mindrecord, create_mindrecord_dataset
    from src.dataset import create_dataset

    tmp = None
    prefix = args.mindrecord
    if not prefix:
        tmp = tempfile.mkdtemp(prefix="bench_mr_")
        prefix = os.path.join(tmp, "bench.mindrecord")
        t0 = time.perf_counter()
        info = convert_to_mindrecord(args.data_dir, prefix, args.shards, verify=False, progress=False)
        print(f"converted {info.num_rows} images into {args.shards} shard(s) in {time.perf_counter() - t0:.1f} s")
    from src.data.mindrecord import read_meta
    from tools.verify_dataset import list_files
    image_files = list_files(args.data_dir)[0]
    load = os.getloadavg()
    print(f"cpus available: {len(os.sched_getaffinity(0))}, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
          f"image_size {args.image_size}, batch {args.batch}, {args.batches} timed batches, median of {args.repeats}")
    print(f"{'pipeline':<8} {'reader':<10} {'workers':>7} {'images/s':>9} {'img/CPU-s':>9}")
    try:
        for mode in args.modes:
            for w in args.workers:
                res = {"folder": [], "mindrecord": []}
                for r in range(args.repeats):
                    for reader in ("folder", "mindrecord"):
                        if args.cold:
                            from tools.benchmark_verify import evict
                            evict(image_files if reader == "folder" else
                                  [q for f in read_meta(prefix).files for q in (f, f + ".db")])
                        if reader == "folder":
                            b = create_dataset(args.data_dir, args.image_size, args.batch, mode=mode,
                                               num_parallel_workers=w, seed=r, drop_remainder=True,
                                               verify_files=False)
                        else:
                            b = create_mindrecord_dataset(prefix, args.image_size, args.batch, mode=mode,
                                                          num_parallel_workers=w, seed=r, drop_remainder=True)
                        res[reader].append(time_bundle(b, args.batches))
                for reader in ("folder", "mindrecord"):
                    rate = statistics.median(x[0] for x in res[reader])
                    cpu = statistics.median(x[1] for x in res[reader])
                    print(f"{mode:<8} {reader:<10} {w:>7} {rate:>9.1f} {cpu:>9.1f}", flush=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
