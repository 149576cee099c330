"""benchmark.py's measurements: one row per fresh process, the machine's description, the tables.

A *spec* (a JSON-able dict: framework, mode, batch size, resolution, precision, steps, threads) is measured by
``benchmark.py --_worker SPEC`` (:func:`worker_main`, one ``BENCH_RESULT {json}`` line); :func:`run_spec`
waits for it with ``os.wait4``, so the row's peak memory (``ru_maxrss``) is that child's alone. A row times
its first step (compile) alone, then ``warmup`` untimed and ``steps`` timed synchronised steps:
``ms_per_step`` is their median, ``compile_s`` the first step minus it.
"""
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

RESULT_TAG = "BENCH_RESULT "
BASE_LR, WARMUP_STEPS = 0.1, 1000  # training rows run the first steps of a warmup to BASE_LR

CSV_COLUMNS = (
    "framework", "impl", "model", "arch", "mode", "batch_size", "img_size", "precision", "threads", "jit_level",
    "settings", "params_m", "first_step_s", "first_step_cpu_s", "compile_s", "ms_per_step", "ms_per_step_min",
    "ms_per_step_iqr", "cpu_ms_per_step", "cpu_s_per_image", "images_per_s", "gflop_per_step", "gflops",
    "flop_limit_frac", "flop_limit_frac_cpu", "peak_rss_mb", "rss_after_build_mb", "last_loss", "steps",
    "load_avg_start", "load_avg_end", "loaded", "other_cores", "steal_cores", "wall_s", "status", "error",
)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _proc_fields(path):
    """``{key: value}`` of a /proc file's ``key: value`` lines (the first of each key)."""
    fields = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _package_version(module):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def machine_info():
    """CPU model, usable cores, RAM, SIMD level, OS and library versions, load average now."""
    from src.utils.host import available_cpus, cpu_flags

    cpu, flags = _proc_fields("/proc/cpuinfo"), cpu_flags()
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE" if flags else "?"
    mem_kb = int((_proc_fields("/proc/meminfo").get("MemTotal") or "0").split()[0])
    info = {
        "cpu": (cpu.get("model name") or platform.processor() or platform.machine())
        + (f" (family {cpu['cpu family']}, model {cpu.get('model')})" if "cpu family" in cpu else ""),
        "simd": simd + ("+FMA" if "fma" in flags else ""), "cores": available_cpus(), "host_cpus": os.cpu_count(),
        "ram_gib": round(mem_kb / 2 ** 20, 1), "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "load_avg": round(os.getloadavg()[0], 2),
    }
    for module in ("mindspore", "torch", "timm", "numpy"):
        info[module] = _package_version(module)
    return info


def describe_machine(info):
    versions = ", ".join(f"{label} {info[key]}" for key, label in
                         (("mindspore", "MindSpore"), ("torch", "PyTorch"), ("timm", "timm"), ("numpy", "NumPy"))
                         if info.get(key))
    return (f"{info['cpu']}, {info['simd']}, {info['cores']} cores usable (host reports {info['host_cpus']}), "
            f"{info['ram_gib']} GiB RAM, {info['os']}, Python {info['python']}; {versions}")


def cpu_jiffies():
    """(busy, steal) jiffies of all CPUs from /proc/stat (None off Linux)."""
    line = _read("/proc/stat").split("\n", 1)[0].split()
    if not line or line[0] != "cpu":
        return None
    v = [int(x) for x in line[1:9]]  # user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6], v[7])


def run_spec(spec, script, timeout_s=1800):
    """Runs ``script --_worker SPEC`` in a fresh process; returns the row (``peak_rss_mb``: the child's
    ``ru_maxrss`` from ``wait4``; a failed or timed-out child: ``status`` != "ok" and the error text)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("GLOG_v", "3")
    threads = str(spec.get("threads") or "")
    if threads:  # the same thread count for both frameworks: the OpenMP / MKL / OpenBLAS pools read these
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
    cmd = [sys.executable, script, "--_worker", json.dumps(spec)]
    start = time.time()
    load_start = os.getloadavg()[0]
    stat_start = cpu_jiffies()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        status, rusage, timed_out = None, None, False
        deadline = start + timeout_s
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.time() > deadline:
                proc.kill()
                _, status, rusage = os.wait4(proc.pid, 0)
                timed_out = True
                break
            time.sleep(0.1)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    row = dict(spec)
    result = None
    for line in stdout.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
    if result is not None:
        row.update(result)
    row["peak_rss_mb"] = round(rusage.ru_maxrss / 1024.0, 1)  # Linux: kilobytes
    wall = time.time() - start
    row["wall_s"] = round(wall, 1)
    stat_end = cpu_jiffies()
    if stat_start and stat_end and wall > 0:
        # CPU time the rest of the machine used while this row ran, in cores: /proc/stat's busy time minus
        # this child's own (its rusage). Direct evidence of contention, unlike the load average.
        hz = os.sysconf("SC_CLK_TCK")
        busy = (stat_end[0] - stat_start[0]) / hz
        row["other_cores"] = round(max(0.0, busy - rusage.ru_utime - rusage.ru_stime) / wall, 2)
        row["steal_cores"] = round((stat_end[1] - stat_start[1]) / hz / wall, 2)
    row.setdefault("load_avg_start", round(load_start, 2))
    row.setdefault("load_avg_end", round(os.getloadavg()[0], 2))
    if timed_out:
        row["status"], row["error"] = "timeout", f"killed after {timeout_s} s"
    elif proc.returncode != 0 or result is None:
        tail = (stderr.strip().splitlines() or stdout.strip().splitlines() or ["no output"])[-6:]
        row["status"] = "failed"
        row["error"] = f"exit {proc.returncode}: " + " | ".join(tail)
    else:
        row.setdefault("status", "ok")
    return row


def _vm_kb(field):
    for line in _read("/proc/self/status").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _timed_loop(step, first_sync, warmup, steps, min_time=0.0, max_steps=None):
    """The first step timed alone, ``warmup`` untimed steps, then at least ``steps`` timed steps, more up to
    ``max_steps`` until ``min_time`` seconds (a stable median for batch 1). ``(first s, first CPU s, walls, CPUs)``."""
    t0, c0 = time.perf_counter(), time.process_time()
    first_sync(step())
    first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    for _ in range(warmup):
        first_sync(step())
    times, cpu = [], []
    max_steps = max(steps, max_steps or steps)
    while len(times) < steps or (sum(times) < min_time and len(times) < max_steps):
        t0, c0 = time.perf_counter(), time.process_time()
        first_sync(step())
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return first, first_cpu, times, cpu


def _summary(spec, timing, extra):
    first, first_cpu, times, cpu = timing
    median = statistics.median(times)
    cpu_median = statistics.median(cpu)
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [median, median, median]
    out = {
        # CPU seconds (all threads of the process) per step: less sensitive than wall time to other
        # jobs on a shared machine, but it counts spin-waiting threads too.
        "cpu_ms_per_step": round(1000 * cpu_median, 2),
        "cpu_s_per_image": round(cpu_median / spec["batch_size"], 4),
        "first_step_s": round(first, 3),
        "first_step_cpu_s": round(first_cpu, 3),
        "compile_s": round(max(0.0, first - median), 3),
        "ms_per_step": round(1000 * median, 2),
        "ms_per_step_min": round(1000 * min(times), 2),
        "ms_per_step_iqr": round(1000 * (q[2] - q[0]), 2),
        "images_per_s": round(spec["batch_size"] / median, 3),
        "steps": len(times),
        "self_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "status": "ok",
    }
    out.update(extra)
    return out


def _ms_worker(spec):
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor, nn

    from src.utils.perf import apply_cpu_performance_settings, prepare_network, split_settings
    from src.utils.runtime import setup_device

    setup_device("CPU", graph_mode=True)
    process, network = split_settings(spec.get("settings"))
    process.setdefault("onednn_isa", None)  # only what the spec asks for
    process["jit_level"] = process.get("jit_level") or spec.get("jit_level")
    applied = apply_cpu_performance_settings(threads=spec.get("threads"), **process)

    from src.image_classification import count_parameters, create_model
    net = create_model(spec["arch"], num_classes=spec["num_classes"])
    params = count_parameters(net)
    train = spec["mode"] == "train"
    net = prepare_network(net, train=train, **network)
    if spec["precision"] == "fp16":
        net = ms.amp.auto_mixed_precision(net, "O2")
    rng = np.random.default_rng(0)
    b, s = spec["batch_size"], spec["img_size"]
    x = Tensor(rng.standard_normal((b, 3, s, s), dtype=np.float32))
    if train:
        from src.loss import CrossEntropySmooth
        from src.lr_generator import get_lr
        from src.utils.optimizers_init import create_optimizer

        # The first steps of a real run: base lr 0.1 in its linear warmup (1e-4, 2e-4, ...), which keeps a
        # random-data run finite in fp16 too. Speed does not depend on the values.
        lr = get_lr("cosine_annealing", BASE_LR, steps_per_epoch=WARMUP_STEPS, max_epoch=1, warmup_epochs=1)
        loss = CrossEntropySmooth(smooth_factor=0.1, num_classes=spec["num_classes"])
        # fp16 uses the zoo's fixed loss scale (1024: gradients scaled by `sens`, unscaled in the optimizer)
        scale = 1024.0 if spec["precision"] == "fp16" else 1.0
        opt = create_optimizer(net, lr, momentum=0.9, weight_decay=1e-4, loss_scale=scale)
        cell = nn.TrainOneStepCell(nn.WithLossCell(net, loss), opt, sens=scale)
        cell.set_train(True)
        y = Tensor(rng.integers(0, spec["num_classes"], size=(b,), dtype=np.int32))

        def step():
            out = cell(x, y)
            return out[0] if isinstance(out, tuple) else out
    else:
        net.set_train(False)
        cell = net

        def step():
            return cell(x)

    losses = []

    def sync(out):
        value = out.asnumpy()
        if train:
            losses.append(float(value))

    rss_build = _vm_kb("VmRSS")
    timing = _timed_loop(step, sync, spec["warmup"], spec["steps"], spec.get("min_time", 0.0), spec.get("max_steps"))
    # fp32 losses must stay finite (a sanity check of the train step). fp16 on CPU is measured for speed
    # only: at 32 px / batch 2 (a 1x1 last stage) its loss turns NaN from step 2, with or without loss
    # scale (64 px / batch 4 stays finite); the NaN is then visible in the row's last_loss.
    if train and spec["precision"] == "fp32" and not all(np.isfinite(losses)):
        raise RuntimeError(f"non-finite training loss: {losses}")
    return _summary(spec, timing, {
        "params_m": round(params / 1e6, 3), "rss_after_build_mb": round(rss_build / 1024.0, 1),
        "impl": f"MindSpore {ms.__version__} GRAPH", "applied": applied,
        "jit_level": applied.get("jit_level", spec.get("jit_level") or "default"),
        "last_loss": losses[-1] if losses else None})


def _torch_worker(spec):
    import numpy as np
    import timm
    import torch

    threads = spec.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    model = timm.create_model(spec.get("timm_model", "cspdarknet53"), pretrained=False,
                              num_classes=spec["num_classes"], **dict(spec.get("timm_kwargs") or {}))
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if spec.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    b, s = spec["batch_size"], spec["img_size"]
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((b, 3, s, s), dtype=np.float32))
    if spec.get("channels_last"):
        x = x.contiguous(memory_format=torch.channels_last)
    train = spec["mode"] == "train"
    run = torch.compile(model) if spec.get("torch_compile") else model
    autocast = spec["precision"] == "fp16"
    impl = f"PyTorch {torch.__version__.split('+')[0]} " + ("compile" if spec.get("torch_compile") else "eager")
    if train:
        model.train()
        decay = [p for p in model.parameters() if p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.ndim <= 1]
        opt = torch.optim.SGD([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=BASE_LR,
                              momentum=0.9, weight_decay=1e-4)
        # same warmup as ours: lr_i = BASE_LR * (i + 1) / WARMUP_STEPS
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: (i + 1) / WARMUP_STEPS)
        crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
        y = torch.from_numpy(rng.integers(0, spec["num_classes"], size=(b,))).long()

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.float16, enabled=autocast):
                loss = crit(run(x).float(), y)
            loss.backward()
            opt.step()
            sched.step()
            return loss
    else:
        model.eval()

        def step():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.float16, enabled=autocast):
                return run(x)

    losses = []

    def sync(out):
        if train:
            losses.append(float(out.item()))
        else:
            out.sum().item()

    rss_build = _vm_kb("VmRSS")
    timing = _timed_loop(step, sync, spec["warmup"], spec["steps"], spec.get("min_time", 0.0), spec.get("max_steps"))
    return _summary(spec, timing, {
        "params_m": round(params / 1e6, 3), "rss_after_build_mb": round(rss_build / 1024.0, 1), "impl": impl,
        "jit_level": "compile" if spec.get("torch_compile") else "eager",
        "last_loss": losses[-1] if losses else None})


def _sgemm_worker(spec):
    """Peak fp32 matrix-multiply rate at the spec's thread count: n x n x n sgemm with NumPy (its BLAS) and,
    if installed, torch.mm (MKL / oneDNN); the best median wall rate of the two is the machine's FLOP limit."""
    import numpy as np

    n, reps, threads = int(spec.get("n", 2048)), int(spec.get("reps", 5)), spec.get("threads")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    backends = [("numpy", lambda: np.matmul(a, b))]
    try:
        import torch
        if threads:
            torch.set_num_threads(int(threads))
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        backends.append((f"torch {torch.__version__.split('+')[0]}", lambda: torch.mm(ta, tb)))
    except ImportError:
        pass
    flops = 2.0 * n ** 3
    out = {"n": n, "backends": {}}
    for name, mm in backends:
        mm()
        walls, cpus = [], []
        for _ in range(reps):
            t, c = time.perf_counter(), time.process_time()
            mm()
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        out["backends"][name] = {"gflops": round(flops / statistics.median(walls) / 1e9, 2),
                                 "gflops_per_cpu_s": round(flops / statistics.median(cpus) / 1e9, 2)}
    best = max(out["backends"], key=lambda k: out["backends"][k]["gflops"])
    out.update(best=best, gflops=out["backends"][best]["gflops"],
               gflops_per_cpu_s=max(v["gflops_per_cpu_s"] for v in out["backends"].values()), status="ok")
    return out


def measure_sgemm(script, threads, n=2048, reps=5, timeout_s=600):
    """Runs :func:`_sgemm_worker` in a fresh process (same env as the rows); returns its result dict."""
    spec = {"framework": "sgemm", "threads": threads, "n": n, "reps": reps}
    return run_spec(spec, script, timeout_s=timeout_s)


def describe_sgemm(sgemm, threads):
    """One line: the measured sgemm peak (the FLOP limit of the rows' fractions)."""
    if not sgemm or sgemm.get("status") != "ok":
        return f"sgemm peak not measured ({(sgemm or {}).get('error', 'skipped')})"
    others = ", ".join(f"{k} {v['gflops']:.1f}" for k, v in sgemm["backends"].items() if k != sgemm["best"])
    return (f"FLOP limit: fp32 sgemm peak at {threads} thread(s) {sgemm['gflops']:.1f} GFLOP/s ({sgemm['best']}, "
            f"{sgemm['n']}^3" + (f"; {others}" if others else "") + f"), {sgemm['gflops_per_cpu_s']:.1f} GFLOP per "
            f"CPU-second; load {sgemm.get('load_avg_start')}-{sgemm.get('load_avg_end')}")


def worker_main(spec_json):
    """Child entry point: measure one spec, print ``BENCH_RESULT {json}``, exit 0 (or raise)."""
    spec = json.loads(spec_json)
    load_start = os.getloadavg()[0]
    if spec["framework"] == "mindspore":
        result = _ms_worker(spec)
    elif spec["framework"] == "torch":
        result = _torch_worker(spec)
    elif spec["framework"] == "sgemm":
        result = _sgemm_worker(spec)
    else:
        raise ValueError(f"unknown framework {spec['framework']!r}")
    result["load_avg_start"] = round(load_start, 2)
    result["load_avg_end"] = round(os.getloadavg()[0], 2)
    print(RESULT_TAG + json.dumps(result), flush=True)
    return 0


def write_csv(rows, path):
    import csv

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            out = dict(row)
            if isinstance(out.get("settings"), dict):
                out["settings"] = ";".join(f"{k}={v}" for k, v in sorted(out["settings"].items()))
            writer.writerow(out)


def describe_settings(row):
    """One line: the settings a MindSpore row ran with (threads, oneDNN ISA, network rewrites)."""
    applied = row.get("applied") or {}
    settings = row.get("settings") or {}
    parts = [f"{row['mode']}: {applied.get('threads', 'default (25)')} kernel threads",
             f"oneDNN ISA {applied.get('onednn_isa', 'default')}",
             "fused Mish kernel (src.utils.fused_ops), LeakyReLU as Maximum(a*x, x)"
             if str(settings.get("fused_act")) == "mish" else
             "fused Mish and LeakyReLU kernels (src.utils.fused_ops)" if settings.get("fused_act") else
             "Mish as Softplus-Tanh-Mul, LeakyReLU as Maximum(a*x, x)"]
    if row["mode"] == "infer":
        parts.append("BN folded" if settings.get("fold_bn") else "BN not folded")
    else:
        parts.append("unfused activations recomputed in backward" if settings.get("recompute_act") else
                     "activations kept for backward")
    if applied.get("jit_level"):
        parts.append(f"jit {applied['jit_level']}")
    return ", ".join(parts)


def describe_row(row, threads):
    """The console line of one finished row (and a warning line when other jobs shared the cores)."""
    head = f"{row['model'][:34]:34s} {row['mode']:5s} bs={row['batch_size']:<3d}"
    frac = row.get("flop_limit_frac")
    line = (f"{head}: {row['status']}: {row.get('error')}" if row["status"] != "ok" else
            f"{head} {row['img_size']}px: {row['ms_per_step']:9.1f} ms/step {row['images_per_s']:8.2f} img/s "
            f"{row['cpu_s_per_image']:7.3f} CPU s/img" + (f" {100 * frac:4.0f}% of FLOP limit" if frac is not None
                                                           else "")
            + f"  first step {row['first_step_s']:.1f}s  peak {row['peak_rss_mb'] / 1024:.2f} GB  "
            f"load {row['load_avg_start']}-{row['load_avg_end']}")
    if row.get("loaded"):
        line += (f"\nWARNING: other jobs shared the cores during this row (other processes used "
                 f"{row.get('other_cores', '?')} cores; load average {row['load_avg_start']}-{row['load_avg_end']} "
                 f"for its {row.get('threads') or threads} threads): its wall-clock figures are not a quiet "
                 "machine's (marked (!); compare CPU s/img)")
    return line


def _fmt(value, digits=2):
    if value in (None, ""):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


#: a row is marked loaded (``annotate``) when other processes used this many cores during it ...
OTHER_CORES_LIMIT = 0.25
#: ... or when the load average exceeded the row's threads by more than this
LOAD_MARGIN = 0.5


def annotate(rows, sgemm=None):
    """Adds each row's FLOPs per step and rate (``gflops``), its fraction of the sgemm peak by wall time
    (``flop_limit_frac``) and per CPU-second (``flop_limit_frac_cpu``, robust to other load), and ``loaded``:
    other processes used ``OTHER_CORES_LIMIT`` cores meanwhile, or the load average exceeded the row's threads
    by more than ``LOAD_MARGIN`` (the benchmark's own threads count in it)."""
    from benchmarks.flops import step_flops

    peak = (sgemm or {}).get("gflops") if (sgemm or {}).get("status") == "ok" else None
    peak_cpu = (sgemm or {}).get("gflops_per_cpu_s") if peak else None
    for r in rows:
        threads = r.get("threads") or (r.get("applied") or {}).get("threads") or 0
        loads = [v for v in (r.get("load_avg_start"), r.get("load_avg_end")) if isinstance(v, (int, float))]
        other = r.get("other_cores")
        r["loaded"] = bool((threads and loads and max(loads) > threads + LOAD_MARGIN) or
                           (isinstance(other, (int, float)) and other >= OTHER_CORES_LIMIT))
        if r.get("status") != "ok":
            continue
        flops_arch = r.get("flops_arch") or r.get("arch")
        try:
            gflop = step_flops(flops_arch, r["mode"], r["batch_size"], r["img_size"], r["num_classes"]) / 1e9
        except ValueError:  # not a registered architecture
            continue
        r["gflop_per_step"] = round(gflop, 2)
        r["gflops"] = round(gflop / (r["ms_per_step"] / 1000.0), 2)
        if peak:
            r["flop_limit_frac"] = round(r["gflops"] / peak, 3)
        if peak_cpu and r.get("cpu_ms_per_step"):
            r["flop_limit_frac_cpu"] = round(gflop / (r["cpu_ms_per_step"] / 1000.0) / peak_cpu, 3)
    return rows


def loaded_rows(rows):
    return [r for r in rows if r.get("loaded")]


def _pct(value):
    return "-" if value in (None, "") else f"{100 * value:.0f}%"


def markdown_table(rows):
    """mindcv's model-table layout plus CPU time, FLOP-limit fraction, peak memory and load ((!): loaded)."""
    head = ("| model name | framework | mode | params(M) | cards | batch size | resolution | precision | jit level "
            "| graph compile | ms/step | img/s | CPU s/img | FLOP limit (wall / CPU) | peak mem (GB) | load avg "
            "| other cores |")
    lines = [head, "|" + "|".join([" :---: "] * (head.count("|") - 1)) + "|"]
    for r in rows:
        ok = r.get("status") == "ok"
        lines.append("| " + " | ".join([
            r.get("model", r.get("arch", "?")), r.get("impl") or r["framework"], r["mode"],
            _fmt(r.get("params_m")), "1 (CPU)", str(r["batch_size"]), f"{r['img_size']}x{r['img_size']}",
            r["precision"], _fmt(r.get("jit_level")),
            f"{r['compile_s']:.1f}s" if ok else r.get("status", "?"),
            _fmt(r.get("ms_per_step"), 1) if ok else "-", _fmt(r.get("images_per_s"), 2) if ok else "-",
            _fmt(r.get("cpu_s_per_image"), 3) if ok else "-",
            f"{_pct(r.get('flop_limit_frac'))} / {_pct(r.get('flop_limit_frac_cpu'))}" if ok else "-",
            _fmt((r.get("peak_rss_mb") or 0) / 1024.0, 2),
            f"{_fmt(r.get('load_avg_start'))}-{_fmt(r.get('load_avg_end'))}" + (" (!)" if r.get("loaded") else ""),
            _fmt(r.get("other_cores")),
        ]) + " |")
    return "\n".join(lines)


def _pair_key(r):
    arch = r.get("pair_arch") or r.get("arch")
    return (arch, r["mode"], r["batch_size"], r["img_size"], r["precision"])


def ratio_rows(rows):
    """Pairs each of our rows with its like-for-like timm row (same arch pair, mode, batch, resolution,
    precision) and computes ours/timm."""
    ours = {_pair_key(r): r for r in rows if r["framework"] == "mindspore" and r.get("status") == "ok"}
    out = []
    for r in rows:
        if r["framework"] != "torch" or r.get("status") != "ok":
            continue
        o = ours.get(_pair_key(r))
        if o is None:
            continue
        cpu_ratio = (r["cpu_s_per_image"] / o["cpu_s_per_image"]) if o.get("cpu_s_per_image") else None
        out.append({
            "arch": o["arch"], "ref_model": r.get("model"), "mode": r["mode"], "batch_size": r["batch_size"],
            "img_size": r["img_size"], "ours_ips": o["images_per_s"], "ref_ips": r["images_per_s"],
            "speed_ratio": o["images_per_s"] / r["images_per_s"],
            "ours_cpu_s": o.get("cpu_s_per_image"), "ref_cpu_s": r.get("cpu_s_per_image"), "cpu_ratio": cpu_ratio,
            "ours_mem_mb": o["peak_rss_mb"], "ref_mem_mb": r["peak_rss_mb"],
            "mem_ratio": o["peak_rss_mb"] / r["peak_rss_mb"],
            "ours_compile_s": o["compile_s"], "ref_compile_s": r["compile_s"],
            "ours_flop_frac": o.get("flop_limit_frac"), "ref_flop_frac": r.get("flop_limit_frac"),
            "ref_impl": r.get("impl"), "loaded": bool(o.get("loaded") or r.get("loaded")),
        })
    return out


def ratio_table(ratios):
    head = ("| mode | batch size | resolution | ours | timm | ours img/s | timm img/s | speed ours/timm "
            "| CPU s/img ours / timm | speed per CPU-s ours/timm | FLOP limit ours / timm | ours peak (GB) "
            "| timm peak (GB) | memory ours/timm | ours compile | timm first-step overhead | load > threads |")
    lines = [head, "|" + "|".join([" :---: "] * (head.count("|") - 1)) + "|"]
    for q in ratios:
        lines.append("| " + " | ".join([
            q["mode"], str(q["batch_size"]), f"{q['img_size']}x{q['img_size']}", q["arch"], str(q["ref_model"]),
            f"{q['ours_ips']:.2f}", f"{q['ref_ips']:.2f}", f"{q['speed_ratio']:.2f}x",
            f"{_fmt(q['ours_cpu_s'], 3)} / {_fmt(q['ref_cpu_s'], 3)}",
            "-" if q["cpu_ratio"] is None else f"{q['cpu_ratio']:.2f}x",
            f"{_pct(q['ours_flop_frac'])} / {_pct(q['ref_flop_frac'])}",
            f"{q['ours_mem_mb'] / 1024:.2f}", f"{q['ref_mem_mb'] / 1024:.2f}", f"{q['mem_ratio']:.2f}x",
            f"{q['ours_compile_s']:.1f}s", f"{q['ref_compile_s']:.1f}s", "yes (!)" if q["loaded"] else "no"]) + " |")
    return "\n".join(lines)
