"""A/B of network-structure options: CPU time, compile CPU time, peak RSS and memory-pool peak, one fresh
process per variant (load-independent evidence: CPU seconds, bytes).

    python benchmarks/probes/arch_variants.py --mode train --batch 8 --img 128 --threads 1 \
        --variants "timm timm:padding=same timm:split=separate,concat_order=blocks_first ours" \
        [--set recompute_act=false]

A variant is ``base[:key=value[,key=value]]``: ``base`` a registered arch (``ours`` = cspdarknet53,
``timm`` = cspdarknet53_timm) and ``key=value`` ``CspArch`` fields to change (padding, split,
concat_order, activation) or ``+setting=value`` for a ``src.utils.perf`` network/process setting of
that variant only (e.g. ``timm:+recompute_act=false``). Changed structures are not the registered
numerics (``padding=same`` on the timm arch computes another function): they measure what an option
costs, nothing else. The memory-pool peak is read from MindSpore's INFO log ("actual peak used mem").
"""
import argparse
import dataclasses
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASES = {"ours": "cspdarknet53", "timm": "cspdarknet53_timm", "tiny": "cspdarknet_tiny"}


def _value(text):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def parse_variant(text):
    base, _, rest = text.partition(":")
    arch_over, settings = {}, {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        if k.startswith("+"):
            settings[k[1:]] = _value(v)
        else:
            arch_over[k] = _value(v)
    return BASES.get(base, base), arch_over, settings


def child(variant, mode, batch, img, threads, steps, extra_settings):
    sys.path.insert(0, ROOT)
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor, nn

    from src.archs import get_arch
    from src.utils.perf import apply_cpu_performance_settings, prepare_network, recommended_settings, split_settings
    from src.utils.runtime import setup_device

    base, arch_over, settings_over = parse_variant(variant)
    setup_device("CPU", graph_mode=True)
    settings = recommended_settings(mode)
    settings.update(extra_settings)
    settings.update(settings_over)
    process, network = split_settings(settings)
    apply_cpu_performance_settings(threads=threads, **process)
    arch = get_arch(base)
    if arch_over:
        arch = dataclasses.replace(arch, name=f"{arch.name}[{variant}]", **arch_over)
    from src.image_classification import create_model
    net = prepare_network(create_model(arch, num_classes=1000), train=mode == "train", **network)
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((batch, 3, img, img), dtype=np.float32))
    if mode == "train":
        from src.loss import CrossEntropySmooth
        from src.utils.optimizers_init import create_optimizer
        opt = create_optimizer(net, 1e-4, momentum=0.9, weight_decay=1e-4)
        cell = nn.TrainOneStepCell(nn.WithLossCell(net, CrossEntropySmooth(smooth_factor=0.1, num_classes=1000)), opt)
        cell.set_train(True)
        y = Tensor(rng.integers(0, 1000, size=(batch,), dtype=np.int32))

        def step():
            return float(cell(x, y).asnumpy())
    else:
        net.set_train(False)

        def step():
            return float(net(x).asnumpy().sum())
    t, c = time.perf_counter(), time.process_time()
    first = step()
    first_wall, first_cpu = time.perf_counter() - t, time.process_time() - c
    walls, cpus, values = [], [], [first]
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        values.append(step())
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return {"variant": variant, "arch": arch.name, "settings": settings, "first_wall_s": first_wall,
            "first_cpu_s": first_cpu, "cpu_s_step": statistics.median(cpus), "wall_s_step": statistics.median(walls),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "values": values[:3]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", default="train", choices=("train", "infer"))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--img", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--variants", default="timm ours", help="space- or ;-separated variants")
    p.add_argument("--set", dest="settings", action="append", default=[])
    p.add_argument("--_child", default=None)
    a = p.parse_args()
    extra = {}
    for item in a.settings:
        k, _, v = item.partition("=")
        extra[k] = _value(v)
    if a._child:
        print("RESULT " + json.dumps(child(a._child, a.mode, a.batch, a.img, a.threads, a.steps, extra)), flush=True)
        return 0
    print(f"{a.mode} bs {a.batch} {a.img}px, {a.threads} thread(s), {a.steps} steps, extra settings {extra}; "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"{'variant':44s} {'CPU s/step':>10s} {'wall s/step':>11s} {'1st CPU s':>9s} {'1st wall':>8s} "
          f"{'peak RSS':>9s} {'pool peak':>9s}  first values")
    for v in [v for v in re.split(r"[\s;]+", a.variants) if v]:
        env = dict(os.environ, GLOG_v="1", MS_MEMORY_STATISTIC="1")
        with tempfile.TemporaryFile("w+") as err:
            cmd = [sys.executable, __file__, "--mode", a.mode, "--batch", str(a.batch), "--img", str(a.img),
                   "--threads", str(a.threads), "--steps", str(a.steps), "--_child", v]
            for s in a.settings:
                cmd += ["--set", s]
            out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
            err.seek(0)
            pool = None
            for line in err:
                m = re.search(r"actual peak used mem:(\d+)M", line)
                if m:
                    pool = int(m.group(1))
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if not line:
            print(f"{v:44s} FAILED (exit {out.returncode})", flush=True)
            continue
        r = json.loads(line[0][7:])
        print(f"{v:44s} {r['cpu_s_step']:10.3f} {r['wall_s_step']:11.3f} {r['first_cpu_s']:9.2f} "
              f"{r['first_wall_s']:8.1f} {r['peak_rss_mb']:8.0f}M {pool if pool is not None else '-':>8}M  "
              f"{[round(x, 5) for x in r['values']]}", flush=True)
    print(f"load at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
