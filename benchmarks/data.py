"""Images per second of the data pipelines alone (no model) on an ImageFolder tree: the folder reader and the
MindRecord reader on the same images, per worker count (``benchmark.py --data_dir`` runs it).

    python benchmarks/data.py --data_dir /path/to/imagenet/train --workers 1 2 --image_size 224
    python benchmarks/data.py --data_dir DIR --readers folder mindrecord [--mindrecord PREFIX] [--cold]
    python benchmarks/data.py --data_dir /tmp/bench_jpegs --make_synthetic 300 [--model_rate 2.1]

Each (mode, reader, workers) builds the real pipeline (``src.data.create_dataset``; without --mindrecord the
folder is converted first, into a temporary folder), skips the first batch, times --batches batches and prints
the median of --repeats runs per wall second and per CPU second (the pipeline's cost, robust to other load).
--cold evicts the files from the page cache first; --make_synthetic N writes N photo-like 500x375 JPEGs
(Fashion-MNIST items on textured backgrounds, ~75 KB each, like ImageNet's) in 10 class folders.
"""
import argparse
import gzip
import math
import os
import statistics
import sys
import time

os.environ.setdefault("GLOG_v", "3")

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

FMNIST_TEST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def _source_items(n):
    """28x28 uint8 items: the Debian package's test file if installed, else the committed slice."""
    if os.path.isfile(FMNIST_TEST):
        with gzip.open(FMNIST_TEST, "rb") as f:
            data = f.read()
        return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    from src.data.demo import load_slice
    xt, _, xv, _ = load_slice()
    return np.concatenate([xt, xv])[:n]


def make_synthetic(out_dir, n, width=500, height=375, seed=0):
    """Write n photo-like JPEGs (quality 90) as out_dir/c<k>/<i>.JPEG; return the mean file size."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    items = _source_items(max(n, 1))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    sizes = []
    side = min(width, height)
    left = (width - side) // 2
    for i in range(n):
        item = np.asarray(Image.fromarray(items[i % len(items)]).resize((side, side), Image.BICUBIC),
                          np.float32)[..., None] / 255.0
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = (xx / width * np.cos(i) + yy / height * np.sin(i))[..., None]
        img = c0 * (1 - t) + c1 * t
        colour = rng.uniform(40, 255, 3)
        img[:, left:left + side] = img[:, left:left + side] * (1 - item) + colour * item
        coarse = rng.normal(0, 14, (height // 3 + 1, width // 3 + 1, 3)).repeat(3, 0).repeat(3, 1)
        img = img + coarse[:height, :width] + rng.normal(0, 6, (height, width, 3))
        folder = os.path.join(out_dir, f"c{i % 10}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{i:05d}.JPEG")
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
        sizes.append(os.path.getsize(path))
    return float(np.mean(sizes)) if sizes else 0.0


def _cpu_seconds():
    """CPU time of this process, all threads (the engine's workers included), in nanosecond steps (os.times
    counts 10 ms clock ticks: a short timed window on a fast CPU read as no CPU time at all)."""
    return time.process_time()


def time_pipeline(data_dir, mode, workers, image_size, batch, batches, repeats, reader="folder", prefix="",
                  cold=False):
    """Median (images per wall second, images per CPU second) over the repeats."""
    from src.data import create_dataset
    rates, cpu_rates = [], []
    for r in range(repeats):
        if cold:
            _evict(data_dir, reader, prefix)
        if reader == "mindrecord":
            bundle = create_dataset(prefix, image_size, batch, mode=mode, num_parallel_workers=workers, seed=r,
                                    drop_remainder=True, dataset_format="mindrecord")
        else:
            bundle = create_dataset(data_dir, image_size, batch, mode=mode, num_parallel_workers=workers,
                                    seed=r, drop_remainder=True)
        epochs = math.ceil((batches + 1) / bundle.steps_per_epoch)
        it = bundle.dataset.create_tuple_iterator(output_numpy=True, num_epochs=epochs)
        done, images, t0 = -1, 0, None
        for _ in range(epochs):
            for x, _ in it:
                done += 1
                if done == 0:
                    t0 = time.perf_counter()  # start after the first batch (pipeline start-up)
                    c0 = _cpu_seconds()
                    continue
                images += x.shape[0]
                if done >= batches:
                    break
            if done >= batches:
                break
        rates.append(images / (time.perf_counter() - t0))
        cpu_rates.append(images / max(1e-9, _cpu_seconds() - c0))
        it.stop()
    return statistics.median(rates), statistics.median(cpu_rates)


def evict(paths):
    """Drops these files' pages from the page cache (clean pages only; nothing else is touched)."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _evict(data_dir, reader, prefix):
    if reader == "mindrecord":
        from src.data.mindrecord import read_meta
        evict([q for f in read_meta(prefix).files for q in (f, f + ".db")])
    else:
        from src.data.listing import list_image_folder
        evict([os.path.join(data_dir, p) for p in list_image_folder(data_dir, None)[1]])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", required=True, help="ImageFolder root (root/<class>/<image>)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="num_parallel_workers values")
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=20, help="timed batches per run")
    p.add_argument("--repeats", type=int, default=3, help="runs per setting; the median is printed")
    p.add_argument("--modes", nargs="+", default=["train", "eval"], choices=["train", "eval"])
    p.add_argument("--readers", nargs="+", default=["folder"], choices=["folder", "mindrecord"],
                   help="folder (ImageFolder files) and/or mindrecord (the same images converted)")
    p.add_argument("--mindrecord", default="", help="an existing conversion of --data_dir (default: convert now)")
    p.add_argument("--shards", type=int, default=2, help="MindRecord shards of the conversion")
    p.add_argument("--cold", action="store_true", help="evict the files from the page cache before each run")
    p.add_argument("--model_rate", type=float, default=None,
                   help="images/s the model consumes (e.g. from a training log) to print the ratio")
    p.add_argument("--make_synthetic", type=int, default=0, metavar="N",
                   help="first write N photo-like 500x375 JPEGs into --data_dir (if it has no images yet)")
    args = p.parse_args(argv)
    args.data_dir = os.path.abspath(args.data_dir)  # the file checks' worker processes run in another folder

    import logging
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.make_synthetic and not (os.path.isdir(args.data_dir) and os.listdir(args.data_dir)):
        t0 = time.perf_counter()
        kb = make_synthetic(args.data_dir, args.make_synthetic) / 1024
        print(f"wrote {args.make_synthetic} JPEGs (500x375, mean {kb:.0f} KB) to {args.data_dir} "
              f"in {time.perf_counter() - t0:.1f} s")

    prefix, tmp = args.mindrecord, None
    if "mindrecord" in args.readers and not prefix:
        import tempfile
        from src.data.convert import convert_to_mindrecord
        tmp = tempfile.mkdtemp(prefix="bench_mr_")
        prefix = os.path.join(tmp, "bench.mindrecord")
        t0 = time.perf_counter()
        info = convert_to_mindrecord(args.data_dir, prefix, args.shards, manifest=None, progress=False)
        print(f"converted {info.num_rows} images into {args.shards} MindRecord shard(s) in "
              f"{time.perf_counter() - t0:.1f} s (full decode check included)")
    try:
        load = "%.1f" % os.getloadavg()[0]
    except OSError:
        load = "?"
    print(f"cpus available: {len(os.sched_getaffinity(0))}, load average {load}; image_size {args.image_size}, "
          f"batch {args.batch}, {args.batches} timed batches, median of {args.repeats}")
    header = f"{'pipeline':<8} {'reader':<10} {'workers':>7} {'images/s':>9} {'ms/batch':>9} {'img/CPU-s':>9}"
    if args.model_rate:
        header += f" {'x model':>8}"
    print(header)
    try:
        for mode in args.modes:
            for w in args.workers:
                for reader in args.readers:
                    rate, cpu_rate = time_pipeline(args.data_dir, mode, w, args.image_size, args.batch,
                                                   args.batches, args.repeats, reader, prefix, args.cold)
                    line = (f"{mode:<8} {reader:<10} {w:>7} {rate:>9.1f} {1000 * args.batch / rate:>9.3f} "
                            f"{cpu_rate:>9.1f}")
                    if args.model_rate:
                        line += f" {rate / args.model_rate:>8.1f}"
                    print(line, flush=True)
    finally:
        if tmp:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
