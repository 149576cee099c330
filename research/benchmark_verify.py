"""Cost of the full decode check (``src.data.verify``): per 1000 files, cold and warm page cache, manifest hit.

    python research/benchmark_verify.py --data_dir /tmp/verify_bench --make_photos 1000 --workers 1 2
    python research/benchmark_verify.py --data_dir /data/imagenet/train --limit 5000 --decoders mindspore

For each decoder (``mindspore``: the pipeline's ``vision.Decode``; ``pil``; ``cheap``: the head/tail check
only) and worker count it times ``verify_images`` over the files three ways:

* ``cold``: the files' pages are first evicted from the page cache with ``posix_fadvise(DONTNEED)`` (only these
  files; the rest of the machine's cache is left alone), so every byte is read from the disk;
* ``warm``: the same again, files now cached;
* ``manifest``: a run that finds every file in the manifest (stat of each file + the manifest lookup).

It prints wall seconds and CPU seconds (this process and its worker processes) per 1000 files, the worker
start-up cost, and an extrapolation to ImageNet's 1,281,167 training files on 8 and 2 cores: CPU time per
file divided by the cores, plus one worker start-up; the cold figure is also bounded below by the disk
(``--disk_mb_s``, default 500 MB/s: a SATA SSD; the mean file size is the measured one). Also times a
1.28 M-entry manifest: load, lookups, write.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("GLOG_v", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.data import evict  # noqa: E402

IMAGENET_TRAIN = 1281167


def make_photos(out_dir, n, seed=0, quality=95, noise=9.0):
    """n JPEGs cut from scikit-image's CC0 photos: a random crop (10-100 % of the area), resized to an
    ImageNet-like size (500x375, 375x500, 500x333 or 500x500), flipped half the time, with sensor-like noise, quality 95, in 10
    class folders. Mean about 110 KB, as ImageNet's training images."""
    import numpy as np
    import skimage.data as sk
    from PIL import Image
    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(getattr(sk, name)()).convert("RGB") for name in
              ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
               "cat", "camera", "coins")]
    sizes = [(500, 375), (375, 500), (500, 333), (500, 500)]
    total = 0
    for i in range(n):
        im = photos[i % len(photos)]
        w, h = im.size
        area = rng.uniform(0.1, 1.0) * w * h
        cw = int(min(w, max(32, np.sqrt(area * rng.uniform(0.75, 1.33)))))
        ch = int(min(h, max(32, area / cw)))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out = im.crop((x, y, x + cw, y + ch)).resize(sizes[int(rng.integers(len(sizes)))], Image.BICUBIC)
        if rng.random() < 0.5:
            out = out.transpose(Image.FLIP_LEFT_RIGHT)
        arr = np.asarray(out, np.float32) * rng.uniform(0.8, 1.2, 3) + rng.normal(0, noise, (out.size[1], out.size[0], 3))
        folder = os.path.join(out_dir, f"c{i % 10}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{i:05d}.JPEG")
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=quality)
        total += os.path.getsize(path)
    return total / max(1, n)


def _cpu():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def cached_fraction(paths, sample=200):
    """Fraction of the sampled files' bytes in the page cache (util-linux ``fincore``); None without it."""
    import shutil
    import subprocess
    if not shutil.which("fincore"):
        return None
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES,SIZE"] + paths[:sample],
                         capture_output=True, text=True).stdout.split()
    res = sum(int(v) for v in out[0::2])
    size = sum(int(v) for v in out[1::2])
    return res / size if size else None


def time_verify(paths, decoder, workers, manifest=None, root=None):
    """(wall s, CPU s of this process and of the check's workers, stats) of one check. The first check of a
    process also starts the forkserver, which imports the decoder once (``forkserver_cpu``)."""
    from src.data.verify import verify_images
    st = {}
    c0, t0 = _cpu(), time.perf_counter()
    verify_images(paths, workers=workers, manifest=manifest, root=root, decoder=decoder, stats=st)
    return time.perf_counter() - t0, _cpu() - c0 + st.get("cpu_s", 0.0), st


def forkserver_cpu():
    """CPU seconds the check's forkserver process has used (its decoder import), from /proc; None if unknown."""
    from multiprocessing import forkserver
    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return None


def manifest_scale(n=IMAGENET_TRAIN):
    """Seconds to write, load and look up an n-entry manifest (ImageNet-like relative names)."""
    from src.data.verify import Manifest
    d = tempfile.mkdtemp(prefix="manifest_scale_")
    path = os.path.join(d, "m.jsonl")
    m = Manifest(path, d, "mindspore")
    for i in range(n):
        syn = f"n{1440764 + i % 1000:08d}"
        m.entries[f"{syn}/{syn}_{i}.JPEG"] = (110000 + i % 5000, 1600000000000000000 + i, "ok", "jpeg",
                                              (i * 2654435761) % 2 ** 32)
    t0 = time.perf_counter()
    m.write()
    t1 = time.perf_counter()
    m2 = Manifest(path, d, "mindspore").load()
    t2 = time.perf_counter()
    hits = 0
    for k, e in m2.entries.items():
        hits += m2.entries.get(k) is not None
    t3 = time.perf_counter()
    size = os.path.getsize(path)
    os.remove(path)
    os.rmdir(d)
    return {"entries": n, "mb": size / 1e6, "write_s": t1 - t0, "load_s": t2 - t1, "lookup_s": t3 - t2}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", required=True)
    p.add_argument("--make_synthetic", type=int, default=0, metavar="N",
                   help="first write N photo-like 500x375 JPEGs (benchmarks/data.py) if the folder is empty")
    p.add_argument("--make_photos", type=int, default=0, metavar="N",
                   help="first write N JPEGs cut from scikit-image's photos (ImageNet-like sizes, ~110 KB)")
    p.add_argument("--limit", type=int, default=0, help="use the first N files only")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--decoders", nargs="+", default=["mindspore", "pil", "cheap"])
    p.add_argument("--repeats", type=int, default=1, help="repeats of each warm timing (median)")
    p.add_argument("--disk_mb_s", type=float, default=500.0)
    p.add_argument("--skip_manifest_scale", action="store_true")
    p.add_argument("--json", default="")
    args = p.parse_args(argv)

    if args.make_photos and not (os.path.isdir(args.data_dir) and os.listdir(args.data_dir)):
        kb = make_photos(args.data_dir, args.make_photos) / 1024
        print(f"wrote {args.make_photos} photo JPEGs (mean {kb:.0f} KB) to {args.data_dir}")
    if args.make_synthetic and not (os.path.isdir(args.data_dir) and os.listdir(args.data_dir)):
        from benchmarks.data import make_synthetic
        kb = make_synthetic(args.data_dir, args.make_synthetic) / 1024
        print(f"wrote {args.make_synthetic} JPEGs (500x375, mean {kb:.0f} KB) to {args.data_dir}")
    from tools.verify_dataset import list_files
    paths, _ = list_files(args.data_dir)
    if args.limit:
        paths = paths[:args.limit]
    n = len(paths)
    mean_kb = statistics.mean(os.path.getsize(q) for q in paths) / 1024
    load = os.getloadavg()
    print(f"{n} files, mean {mean_kb:.0f} KB; cpus {len(os.sched_getaffinity(0))}; load average "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    fs_wall = time_verify(paths[:1], args.decoders[0], 1)[0]
    fs_cpu = forkserver_cpu()
    print(f"first check of the process: {fs_wall:.2f} s wall (the forkserver imports the decoder once: "
          f"{'?' if fs_cpu is None else f'{fs_cpu:.2f}'} CPU-s)")
    rows = []
    for dec in args.decoders:
        for w in (args.workers if dec != "cheap" else [1]):
            # start-up: one tiny run (forks the workers)
            s_wall, s_cpu, _ = time_verify(paths[:w], dec, w)
            evict(paths)
            frac = cached_fraction(paths)
            c_wall, c_cpu, st = time_verify(paths, dec, w)
            warm = [time_verify(paths, dec, w)[:2] for _ in range(args.repeats)]
            w_wall = statistics.median(x[0] for x in warm)
            w_cpu = statistics.median(x[1] for x in warm)
            man = os.path.join(tempfile.mkdtemp(prefix="vb_"), "m.jsonl")
            time_verify(paths, dec, w, manifest=man, root=args.data_dir)
            m_wall, m_cpu, mst = time_verify(paths, dec, w, manifest=man, root=args.data_dir)
            assert mst["cached"] == n, mst
            os.remove(man)
            row = dict(decoder=dec, workers=w, startup_wall=s_wall, startup_cpu=s_cpu, cached_before_cold=frac,
                       cold_wall=c_wall, cold_cpu=c_cpu, warm_wall=w_wall, warm_cpu=w_cpu, manifest_wall=m_wall,
                       manifest_cpu=m_cpu, skipped=st.get("crashed", 0))
            rows.append(row)
            frac_s = "?" if frac is None else f"{frac:.0%}"
            print(f"{dec:<9} w={w}: start-up {s_wall:.2f} s / {s_cpu:.2f} CPU-s; per 1000 files: cold "
                  f"{1000 * c_wall / n:.2f} s / {1000 * c_cpu / n:.2f} CPU-s (cached before: {frac_s}), warm "
                  f"{1000 * w_wall / n:.2f} s / {1000 * w_cpu / n:.2f} CPU-s, manifest hit {1000 * m_wall / n:.3f} s"
                  f" / {1000 * m_cpu / n:.3f} CPU-s", flush=True)
    print(f"\nextrapolated to {IMAGENET_TRAIN:,} files (CPU per file / cores + one worker start-up; cold also "
          f">= bytes / {args.disk_mb_s:.0f} MB/s = {IMAGENET_TRAIN * mean_kb / 1024 / args.disk_mb_s / 60:.0f} min)")
    for row in rows:
        per_file_cold = max(0.0, row["cold_cpu"] - row["startup_cpu"]) / n
        per_file_warm = max(0.0, row["warm_cpu"] - row["startup_cpu"]) / n
        per_file_man = row["manifest_wall"] / n  # stat + lookup; below the CPU clock's resolution per run
        for cores in (8, 2):
            start = row["startup_wall"]
            cold = max(IMAGENET_TRAIN * per_file_cold / cores, IMAGENET_TRAIN * mean_kb / 1024 / args.disk_mb_s)
            warm = IMAGENET_TRAIN * per_file_warm / cores
            man = IMAGENET_TRAIN * per_file_man  # one process
            row[f"imagenet_{cores}c_cold_min"] = (cold + start) / 60
            row[f"imagenet_{cores}c_warm_min"] = (warm + start) / 60
            row[f"imagenet_manifest_min"] = man / 60
            print(f"  {row['decoder']:<9} (measured with {row['workers']} worker(s)) on {cores} cores: cold "
                  f"{(cold + start) / 60:.1f} min, warm {(warm + start) / 60:.1f} min; manifest hit {man / 60:.1f} min "
                  f"(one process)")
    if not args.skip_manifest_scale:
        ms = manifest_scale()
        print(f"\nmanifest of {ms['entries']:,} entries: {ms['mb']:.0f} MB, write {ms['write_s']:.1f} s, load "
              f"{ms['load_s']:.1f} s, lookups {ms['lookup_s']:.2f} s")
    else:
        ms = None
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"files": n, "mean_kb": mean_kb, "load": load, "rows": rows, "manifest_scale": ms}, f, indent=1)


if __name__ == "__main__":
    main()
