"""What each decoder does with corrupted JPEG/PNG files: crash, hang, raise, decode with warnings, decode.

    python research/decoder_survey.py --n 600 --seed 0 --sizes 96x72 160x120 --workers 2
    python research/decoder_survey.py --n 200 --sizes 500x375 --decoders ms_decode ms_train_pipe pil

Builds the fuzz corpus of ``tests/fuzz_images.py`` (corrupted copies of real photos, fixed seed) and runs every
file through each decoder in the isolated workers of ``src.data.verify`` (so a crash is caught and counted, and
this process survives). Decoders, none with the cheap up-front check in front:

* ``ms_decode``: ``mindspore.dataset.vision.Decode()`` eager on the bytes (what ``verify_images`` uses);
* ``ms_rcdr``: ``RandomCropDecodeResize(224)`` eager (train's first op; partial decode of a crop);
* ``ms_train_pipe`` / ``ms_eval_pipe``: a one-file GeneratorDataset with the real train / eval transforms of
  ``src.data.transforms``, in ErrorSamplesMode.SKIP (a raise drops the sample: counted as ``raise``);
* ``pil``: ``PIL.Image.open(path).load()`` then ``convert("RGB")``;
* ``cheap``: ``check_image_file`` alone (``skip`` counted as ``raise``).

Prints a table of outcomes per decoder, then per (format, region) the files that crash any MindSpore decoder,
and (``--json``) writes every file's outcome.
"""
import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict

os.environ.setdefault("GLOG_v", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DECODERS = ("cheap", "pil", "ms_decode", "ms_rcdr", "ms_train_pipe", "ms_eval_pipe")
OUTCOMES = ("crash", "hang", "raise", "warn", "ok")


# ---------------------------------------------------------------------------- checks run in the workers
def _bytes(path):
    import numpy as np
    return np.fromfile(path, dtype=np.uint8)


_ops = {}


def check_ms_decode(path):
    import mindspore.dataset.vision as V
    op = _ops.setdefault("decode", V.Decode())
    try:
        img = op(_bytes(path))
    except Exception as exc:
        from src.data.verify import _first_line
        return "skip", _first_line(exc)
    return "ok", f"shape {tuple(img.shape)}"


def check_ms_rcdr(path):
    import mindspore.dataset.vision as V
    op = _ops.setdefault("rcdr", V.RandomCropDecodeResize((224, 224), scale=(0.08, 1.0), ratio=(0.75, 1.333)))
    try:
        img = op(_bytes(path))
    except Exception as exc:
        from src.data.verify import _first_line
        return "skip", _first_line(exc)
    return "ok", f"shape {tuple(img.shape)}"


def _pipe(path, train):
    import numpy as np
    import mindspore.dataset as ds
    from src.data.transforms import eval_transforms, train_transforms
    ds.config.set_error_samples_mode(ds.config.ErrorSamplesMode.SKIP)
    data = _bytes(path)

    def gen():
        yield data, np.array(0, np.int32)

    d = ds.GeneratorDataset(gen, column_names=["image", "label"], shuffle=False)
    d = d.map(train_transforms(224) if train else eval_transforms(224), input_columns="image")
    rows = sum(1 for _ in d.create_tuple_iterator(output_numpy=True, num_epochs=1))
    return ("ok", "1 row") if rows == 1 else ("skip", "sample dropped by the engine (SKIP mode)")


def check_ms_train_pipe(path):
    return _pipe(path, True)


def check_ms_eval_pipe(path):
    return _pipe(path, False)


def check_pil(path):
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.load()
            im.convert("RGB")
    except Exception as exc:
        return "skip", f"{type(exc).__name__}: {exc}"
    return "ok", ""


def check_cheap(path):
    from src.data.checks import check_image_file
    s, r = check_image_file(path)
    return ("skip" if s == "skip" else "ok"), r


def outcome(status, reason):
    if status == "skip":
        if reason.startswith("the decoder crashed"):
            return "crash"
        if reason.startswith("the decoder did not finish"):
            return "hang"
        return "raise"
    return "warn" if "(decoder said:" in reason else "ok"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=600, help="corrupted files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes", nargs="+", default=["96x72", "160x120"], help="WxH of the base images")
    p.add_argument("--decoders", nargs="+", default=list(DECODERS), choices=DECODERS)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--out_dir", default="", help="where the corpus goes (default: a temporary folder)")
    p.add_argument("--json", default="", help="write every file's outcome here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    from tests.fuzz_images import make_corpus
    from src.data.verify import verify_images
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    out_dir = args.out_dir or tempfile.mkdtemp(prefix="decoder_survey_")
    items = make_corpus(out_dir, n=args.n, seed=args.seed, sizes=sizes)
    paths = [it.path for it in items]
    print(f"corpus: {len(items)} corrupted files ({Counter(it.fmt for it in items)}) from sizes {args.sizes}, "
          f"seed {args.seed}, in {out_dir}")
    table = {}
    per_file = defaultdict(dict)
    for dec in args.decoders:
        t0 = time.perf_counter()
        res = verify_images(paths, workers=args.workers, timeout_s=args.timeout,
                            decoder=f"research.decoder_survey:check_{dec}")
        table[dec] = Counter(outcome(r.status, r.reason) for r in res)
        for it, r in zip(items, res):
            per_file[os.path.basename(it.path)][dec] = [outcome(r.status, r.reason), r.reason]
        print(f"  {dec}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print(f"{'decoder':<14}" + "".join(f"{o:>8}" for o in OUTCOMES))
    for dec in args.decoders:
        print(f"{dec:<14}" + "".join(f"{table[dec][o]:>8}" for o in OUTCOMES))
    by_fmt = defaultdict(Counter)
    for it in items:
        row = per_file[os.path.basename(it.path)]
        crashed = any(v[0] in ("crash", "hang") for k, v in row.items() if k.startswith("ms_"))
        by_fmt[(it.fmt, it.region)]["files"] += 1
        if crashed:
            by_fmt[(it.fmt, it.region)]["ms_crash_or_hang"] += 1
    print("MindSpore crashes or hangs by (format, region):")
    for (fmt, region), c in sorted(by_fmt.items()):
        print(f"  {fmt:<5} {region:<10} {c['ms_crash_or_hang']:>4} / {c['files']}")
    # the question for the verifier: does a check by X catch every file that crashes the pipeline?
    for proxy in ("cheap", "pil", "ms_decode"):
        if proxy not in args.decoders:
            continue
        for target in ("ms_train_pipe", "ms_eval_pipe", "ms_rcdr"):
            if target not in args.decoders:
                continue
            bad = [f for f, row in per_file.items() if row[target][0] in ("crash", "hang")]
            missed = [f for f in bad if row_ok(per_file[f][proxy][0])]
            print(f"files crashing/hanging {target}: {len(bad)}; passed by {proxy}: {len(missed)}"
                  + (f" e.g. {missed[:3]}" if missed else ""))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "table": {k: dict(v) for k, v in table.items()},
                       "files": {k: {"label": it.label, **per_file[os.path.basename(it.path)]}
                                 for k, it in ((os.path.basename(i.path), i) for i in items)}}, f, indent=1)


def row_ok(o):
    return o in ("ok", "warn")


if __name__ == "__main__":
    main()
