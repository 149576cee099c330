"""Speed and memory benchmark of CSPDarkNet53 on MindSpore, optionally side by side with timm/PyTorch.

Measures, for each of this project's architectures in ``--arch`` at one resolution and precision:
  * inference images/s for each batch size in ``--infer_batch_sizes`` (default 1, 8, 32);
  * training images/s for each batch size in ``--train_batch_sizes`` (default 8, 32) with the
    project's train step: ``nn.TrainOneStepCell(nn.WithLossCell(net, CrossEntropySmooth(0.1)),
    Momentum(0.9, wd 1e-4 on conv/dense weights only))`` in GRAPH mode;
  * first-step graph compile time and the peak resident memory of the measuring process;
  * CPU-seconds per image (all threads of the process: what other jobs on the machine disturb least),
    the load average at each row's start and end and the CPU the rest of the machine used meanwhile
    ("other cores"); a row during which other processes used a quarter of a core or more, or whose load
    average exceeded its thread count by more than half a core (its own threads count in it), is marked
    (!) and warned about;
  * the machine's fp32 sgemm peak at the same thread count (a fresh process, NumPy and torch.mm of
    2048x2048 matrices) and each row's fraction of it (network FLOPs from ``benchmarks.flops``:
    convs + classifier, training = 3x forward), by wall time and per CPU-second.
Every row runs in a fresh process; its peak memory is that process's ``ru_maxrss``. Rows run until at
least ``--steps`` steps and ``--min_time`` seconds of timed steps (batch-1 rows get tens of steps).
``--compare timm`` runs, right after each of ours, its like-for-like timm network from the registry
(``src.archs``: cspdarknet53 -> ``timm cspdarknet53(act_layer="mish")``, cspdarknet53_timm -> timm's
LeakyReLU ``cspdarknet53``) on PyTorch (eager, or ``--torch_compile``) with the same thread count, and
prints ours/timm.

Examples:
  python benchmark.py --quick                         # CI smoke run, 32 px, batch 2, 2 steps, cspdarknet53
  python benchmark.py --compare timm --csv outputs/bench.csv --md outputs/bench.md   # both archs vs their twins
  python benchmark.py --arch cspdarknet53_timm --image_size 256 --train_batch_sizes 32 --infer_batch_sizes ""
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHS = ("cspdarknet53", "cspdarknet53_timm")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("GLOG_v", "3")


def _int_list(text):
    text = text.strip()
    if not text:
        return []
    try:
        values = [int(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return values


def _settings(items):
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {item!r}")
        low = value.lower()
        if low in ("true", "false"):
            out[key] = low == "true"
        else:
            try:
                out[key] = int(value)
            except ValueError:
                out[key] = value
    return out


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def _get_help_string(self, action):  # each option's default after its help, as the entry scripts show it
        shown = action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in (action.help or "")
        return (action.help or "") + (" (default: %(default)s)" if shown else "")


class _ArgumentParser(argparse.ArgumentParser):
    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unknown option is named as the entry scripts name it (another script's key
        says which scripts use it; a near miss gets a suggestion): one ``error:`` line, exit 2."""
        from src.config import unknown_option

        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            name = extra[0][2:].split("=", 1)[0] if extra[0].startswith("--") else None
            known = [o[2:] for a in self._actions for o in a.option_strings]
            self.exit(2, "error: %s\n" % (unknown_option(name, "benchmark", known) if name
                                           else f"unexpected argument(s): {' '.join(extra)}"))
        return parsed


def build_parser():
    p = _ArgumentParser(prog="benchmark.py", description=__doc__.split("\n\n")[0], formatter_class=_HelpFormatter,
                        epilog=__doc__[__doc__.index("Examples:"):], allow_abbrev=False)
    model = p.add_argument_group("model (the entry scripts' key names)")
    model.add_argument("--arch", default=None,
                       help="comma-separated project architectures (cspdarknet53, cspdarknet53_timm, "
                            "cspdarknet_tiny); default: cspdarknet53,cspdarknet53_timm (--quick: cspdarknet53)")
    model.add_argument("--image_size", "--img_size", dest="image_size", type=int, default=224,
                       help="input height and width in pixels (>= 32)")
    model.add_argument("--num_classes", type=int, default=1000, help="classifier outputs")
    model.add_argument("--precision", default="fp32", choices=("fp32", "fp16"),
                       help="fp16: AMP O2 on MindSpore, autocast float16 on PyTorch (slower on CPU)")
    rows = p.add_argument_group("rows and timing")
    rows.add_argument("--infer_batch_sizes", type=_int_list, default=[1, 8, 32], help="inference rows")
    rows.add_argument("--train_batch_sizes", type=_int_list, default=[8, 32], help="training rows")
    rows.add_argument("--steps", type=int, default=5, help="least timed steps per row (median reported)")
    rows.add_argument("--min_time", type=float, default=10.0,
                      help="more timed steps until this many seconds of them (batch-1 rows), at most --max_steps")
    rows.add_argument("--max_steps", type=int, default=200, help="most timed steps per row")
    rows.add_argument("--warmup", type=int, default=1, help="untimed steps after the first (compile) step")
    rows.add_argument("--no_sgemm", action="store_true", help="skip the sgemm peak (no FLOP-limit fractions)")
    rows.add_argument("--timeout", type=int, default=1800, help="seconds per row before the child is killed")
    rows.add_argument("--quick", action="store_true",
                      help="CI smoke run: 32 px, batch 2 for inference and training, 2 steps, no warmup, "
                           "cspdarknet53 only (unless --arch)")
    ours = p.add_argument_group("MindSpore settings")
    ours.add_argument("--threads", type=int, default=None,
                      help="kernel threads for both frameworks (default: the cores this process may use)")
    ours.add_argument("--jit_level", default=None, choices=("O0", "O1", "O2"),
                      help="MindSpore jit level (default: MindSpore's own)")
    ours.add_argument("--set", dest="settings", action="append", metavar="KEY=VALUE",
                      help="override a src.utils.perf setting for our rows (repeatable), e.g. fold_bn=false, "
                           "onednn_isa=AVX512_CORE, compile_cache_dir=/tmp/c")
    ours.add_argument("--no_perf", action="store_true",
                      help="MindSpore's defaults (oneDNN's own ISA choice, 25 kernel threads, three-primitive "
                           "Mish, no BN folding): the 'before' baseline. Very slow on AVX-512 CPUs")
    ref = p.add_argument_group("reference (timm on PyTorch)")
    ref.add_argument("--compare", choices=("timm",), default=None,
                     help="also measure each arch's like-for-like timm network (src.archs: timm_model, timm_kwargs)")
    ref.add_argument("--timm_model", default="",
                     help="override the timm network of every arch (default: each arch's registry twin)")
    ref.add_argument("--torch_compile", action="store_true", help="reference rows use torch.compile")
    ref.add_argument("--channels_last", action="store_true", help="reference rows use channels_last tensors")
    ref.add_argument("--only", choices=("ours", "timm"), default=None, help="run one side only")
    out = p.add_argument_group("data pipeline and outputs")
    out.add_argument("--data_dir", default=None,
                     help="also run benchmarks/data.py (train pipeline) on this ImageFolder root and compare "
                          "its images/s with our best training images/s")
    out.add_argument("--data_workers", type=int, nargs="+", default=[1, 2], help="pipeline worker counts to try")
    out.add_argument("--csv", default=None, help="write all rows to this CSV")
    out.add_argument("--md", default=None, help="write the markdown tables and machine line to this file")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    return p


def arch_list(args):
    if args.arch:
        return [a.strip() for a in args.arch.split(",") if a.strip()]
    return ["cspdarknet53"] if args.quick else list(DEFAULT_ARCHS)


def timm_twin(arch, override=""):
    """(timm model name, kwargs dict) of ``arch``'s like-for-like timm network (None if it has none)."""
    from src.archs import get_arch_spec

    spec = get_arch_spec(arch)
    if override:
        return override, {}
    if not spec.timm_model:
        return None, {}
    return spec.timm_model, dict(spec.timm_kwargs)


def _timm_label(model, kwargs):
    return f"timm {model}" + (f" ({', '.join(f'{k}={v}' for k, v in sorted(kwargs.items()))})" if kwargs else "")


def make_specs(args):
    """One spec per row: for each arch, ours (and its timm twin's, with --compare) for each batch size."""
    from src.utils.host import available_cpus
    from src.utils.perf import recommended_settings, split_settings

    extra = _settings(args.settings)
    split_settings(extra)  # unknown keys fail here, not in a child
    ref_threads = args.threads or available_cpus()
    if args.no_perf:
        ours_threads = args.threads if args.threads is not None else 0  # 0: MindSpore's default (25)
    else:
        ours_threads = ref_threads
    specs = []
    rows = [("infer", b) for b in args.infer_batch_sizes] + [("train", b) for b in args.train_batch_sizes]
    for arch in arch_list(args):
        timm_model, timm_kwargs = timm_twin(arch, args.timm_model)
        for mode, batch in rows:
            common = dict(mode=mode, batch_size=batch, img_size=args.image_size, precision=args.precision,
                          steps=args.steps, warmup=args.warmup, num_classes=args.num_classes,
                          min_time=args.min_time, max_steps=args.max_steps)
            settings = {"onednn_isa": None} if args.no_perf else recommended_settings(mode)
            settings.update(extra)
            if args.only != "timm":
                specs.append(dict(common, framework="mindspore", model=arch, arch=arch, threads=ours_threads,
                                  jit_level=args.jit_level, settings=settings))
            if args.compare == "timm" and args.only != "ours" and timm_model:
                specs.append(dict(common, framework="torch", model=_timm_label(timm_model, timm_kwargs),
                                  arch=timm_model, timm_model=timm_model, timm_kwargs=sorted(timm_kwargs.items()),
                                  pair_arch=arch, flops_arch=arch, threads=ref_threads,
                                  torch_compile=args.torch_compile, channels_last=args.channels_last, settings={}))
    return specs


def run_data_benchmark(args, model_rate):
    """Runs benchmarks/data.py (the data-pipeline benchmark) on --data_dir; returns its output text."""
    import subprocess

    script = os.path.join(ROOT, "benchmarks", "data.py")
    batch = max(args.train_batch_sizes or [32])
    cmd = [sys.executable, script, "--data_dir", args.data_dir, "--modes", "train", "--workers",
           *[str(w) for w in args.data_workers], "--image_size", str(args.image_size), "--batch", str(batch)]
    if model_rate:
        cmd += ["--model_rate", f"{model_rate:.4f}"]
    if args.quick:
        cmd += ["--batches", "2", "--repeats", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        return f"data benchmark failed (exit {proc.returncode}): " + proc.stderr.strip()[-500:]
    return proc.stdout.strip()


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args._worker is not None:
        from benchmarks.runner import worker_main
        return worker_main(args._worker)
    if args.quick:
        args.image_size, args.steps, args.warmup, args.min_time = 32, 2, 0, 0.0
        args.infer_batch_sizes, args.train_batch_sizes = [2], [2]
    if args.steps < 1 or args.warmup < 0 or args.image_size < 32:
        print("error: --steps must be >= 1, --warmup >= 0 and --image_size >= 32", file=sys.stderr)
        return 2
    if args.compare == "timm":
        # Checked without importing: the parent must stay small, because a child's ru_maxrss starts
        # from the parent's high-water mark at fork (Linux keeps it across exec).
        import importlib.util
        missing = [m for m in ("torch", "timm") if importlib.util.find_spec(m) is None]
        if missing:
            print(f"error: --compare timm needs {' and '.join(missing)} installed", file=sys.stderr)
            return 2

    from src.archs import arch_names  # the registry imports no MindSpore: the parent stays small

    unknown = [a for a in arch_list(args) if a not in arch_names()]
    if unknown or not arch_list(args):
        print(f"error: --arch {args.arch!r}: expected a comma-separated list of {list(arch_names())}",
              file=sys.stderr)
        return 2

    try:
        specs = make_specs(args)
    except (ValueError, argparse.ArgumentTypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    from benchmarks import runner as bu

    info = bu.machine_info()
    machine = bu.describe_machine(info)
    print(f"machine: {machine}; load average {info['load_avg']}", flush=True)
    threads = args.threads or info["cores"]
    sgemm = None
    if not args.no_sgemm:
        sgemm = bu.measure_sgemm(os.path.abspath(__file__), threads, n=1024 if args.quick else 2048,
                                 reps=3 if args.quick else 5, timeout_s=args.timeout)
        print(bu.describe_sgemm(sgemm, threads), flush=True)
    rows = []
    for spec in specs:
        row = bu.run_spec(spec, os.path.abspath(__file__), timeout_s=args.timeout)
        bu.annotate([row], sgemm)
        rows.append(row)
        if row["status"] == "ok":
            frac = row.get("flop_limit_frac")
            print(f"{row['model'][:34]:34s} {row['mode']:5s} bs={row['batch_size']:<3d} {row['img_size']}px: "
                  f"{row['ms_per_step']:9.1f} ms/step {row['images_per_s']:8.2f} img/s "
                  f"{row['cpu_s_per_image']:7.3f} CPU s/img"
                  + (f" {100 * frac:4.0f}% of FLOP limit" if frac is not None else "")
                  + f"  first step {row['first_step_s']:.1f}s  peak {row['peak_rss_mb'] / 1024:.2f} GB  "
                  f"load {row['load_avg_start']}-{row['load_avg_end']}", flush=True)
        else:
            print(f"{row['model'][:34]:34s} {row['mode']:5s} bs={row['batch_size']:<3d}: {row['status']}: "
                  f"{row.get('error')}", flush=True)
        if row.get("loaded"):
            print(f"WARNING: other jobs shared the cores during this row (other processes used "
                  f"{row.get('other_cores', '?')} cores; load average {row['load_avg_start']}-{row['load_avg_end']} "
                  f"for its {row.get('threads') or threads} threads): its wall-clock figures are not a quiet "
                  "machine's (marked (!); compare CPU s/img)", flush=True)
    table = bu.markdown_table(rows)
    ours = [r for r in rows if r["framework"] == "mindspore"]
    notes = sorted({bu.describe_settings(r) for r in ours})
    load_end = os.getloadavg()[0]
    loaded = bu.loaded_rows(rows)
    parts = [f"Machine: {machine}. Load average {info['load_avg']} at start, {load_end:.2f} at end."]
    if loaded or max(info["load_avg"], load_end) > threads + bu.LOAD_MARGIN:
        parts.append(f"**WARNING: other jobs shared the {threads} cores during {len(loaded)} of "
                     f"{len(rows)} rows (marked (!)): other jobs shared the cores, so wall-clock figures are not a "
                     "quiet machine's; compare rows of one run only, or CPU s/img.**")
    if sgemm is not None:
        parts.append(bu.describe_sgemm(sgemm, threads) + ".")
    parts.append("")
    parts += [f"Ours: {n}." for n in notes]
    parts += ["", table]
    ratios = bu.ratio_rows(rows)
    if ratios:
        parts += ["", bu.ratio_table(ratios)]
    if args.data_dir:
        rates = [r["images_per_s"] for r in ours if r["mode"] == "train" and r["status"] == "ok"]
        data = run_data_benchmark(args, max(rates) if rates else None)
        print(data, flush=True)
        parts += ["", "Data pipeline (benchmarks/data.py; 'x model' = pipeline images/s over our best "
                      "training images/s):", "", "```", data, "```"]
    text = "\n".join(parts)
    print()
    print(text)
    if args.csv:
        bu.write_csv(rows, args.csv)
    if args.md:
        os.makedirs(os.path.dirname(os.path.abspath(args.md)), exist_ok=True)
        with open(args.md, "w") as f:
            f.write(text + "\n")
    failed = [r for r in rows if r["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
