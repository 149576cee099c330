"""Speed and memory benchmark of CSPDarkNet53 on MindSpore, optionally side by side with timm/PyTorch.

For each architecture in --arch at one resolution and precision, every row in a fresh process
(benchmarks.runner): inference and training images/s per batch size (training: the project's train step,
label-smoothed cross-entropy and SGD-momentum, GRAPH mode), first-step compile time, the process's peak
resident memory, CPU-seconds per image, the load during the row (rows that shared the cores with other jobs
are marked (!) and warned about), and the fraction of the machine's fp32 sgemm peak at the same thread
count (network FLOPs from benchmarks.flops; training = 3x forward). Rows run at least --steps steps and
--min_time seconds. --compare timm also runs each architecture's like-for-like timm network (src.archs)
on PyTorch with the same threads and prints ours/timm.

Examples:
  python benchmark.py --quick                         # CI smoke run, 32 px, batch 2, 2 steps, cspdarknet53
  python benchmark.py --compare timm --csv outputs/bench.csv --md outputs/bench.md   # both archs vs their twins
  python benchmark.py --arch cspdarknet53_timm --image_size 256 --train_batch_sizes 32 --infer_batch_sizes ""
"""
import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmark.py")  # the children run `benchmark.py --_worker SPEC`
DEFAULT_ARCHS = ("cspdarknet53", "cspdarknet53_timm")


def _int_list(text):
    text = text.strip()
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
        if value.lower() in ("true", "false"):
            out[key] = value.lower() == "true"
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
        """An unknown option is named as the entry scripts name it (another script's key says which scripts
        use it; a near miss gets a suggestion): one ``error:`` line, exit 2."""
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


def make_specs(args):
    """One spec per row: for each arch, ours (and its timm twin's, with --compare) for each batch size."""
    from src.archs import get_arch_spec
    from src.utils.host import available_cpus
    from src.utils.perf import recommended_settings, split_settings

    extra = _settings(args.settings)
    split_settings(extra)  # unknown keys fail here, not in a child
    ref_threads = args.threads or available_cpus()
    ours_threads = (args.threads or 0) if args.no_perf else ref_threads  # 0: MindSpore's default (25)
    specs = []
    rows = [("infer", b) for b in args.infer_batch_sizes] + [("train", b) for b in args.train_batch_sizes]
    for arch in arch_list(args):
        spec = get_arch_spec(arch)
        timm_model, timm_kwargs = (args.timm_model, {}) if args.timm_model else (spec.timm_model,
                                                                                 dict(spec.timm_kwargs))
        label = f"timm {timm_model}" + (f" ({', '.join(f'{k}={v}' for k, v in sorted(timm_kwargs.items()))})"
                                        if timm_kwargs else "")
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
                specs.append(dict(common, framework="torch", model=label, arch=timm_model, timm_model=timm_model,
                                  timm_kwargs=sorted(timm_kwargs.items()), pair_arch=arch, flops_arch=arch,
                                  threads=ref_threads, torch_compile=args.torch_compile,
                                  channels_last=args.channels_last, settings={}))
    return specs


def run_data_benchmark(args, model_rate):
    """Runs benchmarks/data.py (the data-pipeline benchmark) on --data_dir; returns its output text."""
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "data.py"), "--data_dir", args.data_dir, "--modes",
           "train", "--workers", *map(str, args.data_workers), "--image_size", str(args.image_size), "--batch",
           str(max(args.train_batch_sizes or [32]))]
    if model_rate:
        cmd += ["--model_rate", f"{model_rate:.4f}"]
    if args.quick:
        cmd += ["--batches", "2", "--repeats", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        return f"data benchmark failed (exit {proc.returncode}): " + proc.stderr.strip()[-500:]
    return proc.stdout.strip()


def _check_args(args):
    """The command line's error line, or None (checked before any child starts)."""
    if args.steps < 1 or args.warmup < 0 or args.image_size < 32:
        return "--steps must be >= 1, --warmup >= 0 and --image_size >= 32"
    if args.compare == "timm":
        # Checked without importing: the parent must stay small, because a child's ru_maxrss starts
        # from the parent's high-water mark at fork (Linux keeps it across exec).
        import importlib.util
        missing = [m for m in ("torch", "timm") if importlib.util.find_spec(m) is None]
        if missing:
            return f"--compare timm needs {' and '.join(missing)} installed"
    from src.archs import arch_names  # the registry imports no MindSpore: the parent stays small

    if not arch_list(args) or any(a not in arch_names() for a in arch_list(args)):
        return f"--arch {args.arch!r}: expected a comma-separated list of {list(arch_names())}"
    return None


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args._worker is not None:
        from benchmarks.runner import worker_main
        return worker_main(args._worker)
    if args.quick:
        args.image_size, args.steps, args.warmup, args.min_time = 32, 2, 0, 0.0
        args.infer_batch_sizes, args.train_batch_sizes = [2], [2]
    error = _check_args(args)
    try:
        specs = [] if error else make_specs(args)
    except (ValueError, argparse.ArgumentTypeError) as err:
        error = str(err)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from benchmarks import runner as bu

    info = bu.machine_info()
    machine = bu.describe_machine(info)
    print(f"machine: {machine}; load average {info['load_avg']}", flush=True)
    threads = args.threads or info["cores"]
    sgemm = None
    if not args.no_sgemm:
        sgemm = bu.measure_sgemm(SCRIPT, threads, n=1024 if args.quick else 2048, reps=3 if args.quick else 5,
                                 timeout_s=args.timeout)
        print(bu.describe_sgemm(sgemm, threads), flush=True)
    rows = []
    for spec in specs:
        row = bu.annotate([bu.run_spec(spec, SCRIPT, timeout_s=args.timeout)], sgemm)[0]
        rows.append(row)
        print(bu.describe_row(row, threads), flush=True)
    ours = [r for r in rows if r["framework"] == "mindspore"]
    load_end = os.getloadavg()[0]
    loaded = bu.loaded_rows(rows)
    parts = [f"Machine: {machine}. Load average {info['load_avg']} at start, {load_end:.2f} at end."]
    if loaded or max(info["load_avg"], load_end) > threads + bu.LOAD_MARGIN:
        parts.append(f"**WARNING: other jobs shared the {threads} cores during {len(loaded)} of "
                     f"{len(rows)} rows (marked (!)): other jobs shared the cores, so wall-clock figures are not a "
                     "quiet machine's; compare rows of one run only, or CPU s/img.**")
    if sgemm is not None:
        parts.append(bu.describe_sgemm(sgemm, threads) + ".")
    parts += [""] + [f"Ours: {n}." for n in sorted({bu.describe_settings(r) for r in ours})]
    parts += ["", bu.markdown_table(rows)]
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
    print("\n" + text)
    if args.csv:
        bu.write_csv(rows, args.csv)
    if args.md:
        os.makedirs(os.path.dirname(os.path.abspath(args.md)), exist_ok=True)
        with open(args.md, "w") as f:
            f.write(text + "\n")
    return 1 if any(r["status"] != "ok" for r in rows) else 0
