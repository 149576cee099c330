"""Per-op time of one benchmark row with MindSpore's profiler (GRAPH mode, CPU), in a fresh process.

    python research/op_profile.py --arch cspdarknet53_timm --mode infer --batch 1 [--threads 1]
        [--img 224] [--steps 3] [--set fold_bn=false ...] [--top 15]

Prints per op type: occurrences per step, kernel ms per step, share, and "~CPU ms": kernel ms scaled by
the process's CPU time / wall time over the profiled steps. At 1 kernel thread on a loaded machine the
profiler's kernel times include the time the thread was descheduled; the scaling removes that share on
average, so the "~CPU ms" column compares across runs at different loads (its shares are the raw ones).
``--top N`` also lists the N most expensive single ops (full scope names: which layer, which kernel).
"""
import argparse
import csv
import glob
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("GLOG_v", "3")


def _value(text):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        return text


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="cspdarknet53")
    p.add_argument("--mode", default="infer", choices=("infer", "train"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--img", type=int, default=224)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--set", dest="settings", action="append", default=[])
    p.add_argument("--no_recommended", action="store_true", help="start from no settings instead of recommended")
    p.add_argument("--top", type=int, default=0)
    p.add_argument("--keep", default=None, help="keep the profiler output in this folder")
    a = p.parse_args()

    import numpy as np
    import mindspore as ms
    from mindspore import Tensor, nn

    from src.utils.perf import apply_cpu_performance_settings, prepare_network, recommended_settings, split_settings
    from src.utils.runtime import setup_device

    setup_device("CPU", graph_mode=True)
    settings = {} if a.no_recommended else recommended_settings(a.mode)
    for item in a.settings:
        k, _, v = item.partition("=")
        settings[k] = _value(v)
    process, network = split_settings(settings)
    applied = apply_cpu_performance_settings(threads=a.threads, **process)
    from src.image_classification import create_model
    net = prepare_network(create_model(a.arch, num_classes=1000), train=a.mode == "train", **network)
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((a.batch, 3, a.img, a.img), dtype=np.float32))
    if a.mode == "train":
        from src.loss import CrossEntropySmooth
        from src.utils.optimizers_init import create_optimizer
        opt = create_optimizer(net, 1e-4, momentum=0.9, weight_decay=1e-4)
        cell = nn.TrainOneStepCell(nn.WithLossCell(net, CrossEntropySmooth(smooth_factor=0.1, num_classes=1000)), opt)
        cell.set_train(True)
        y = Tensor(rng.integers(0, 1000, size=(a.batch,), dtype=np.int32))

        def step():
            return cell(x, y).asnumpy()
    else:
        net.set_train(False)

        def step():
            return net(x).asnumpy()
    t0, c0 = time.perf_counter(), time.process_time()
    step()
    first_wall, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    step()
    out = a.keep or tempfile.mkdtemp(prefix="op_profile_")
    prof = ms.Profiler(output_path=out)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(a.steps):
        step()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    prof.stop()
    prof.analyse()
    type_csv = glob.glob(os.path.join(out, "**", "cpu_op_type_info_0.csv"), recursive=True)
    detail_csv = glob.glob(os.path.join(out, "**", "cpu_op_detail_info_0.csv"), recursive=True)
    if not type_csv:
        print("no profiler output found under", out)
        return 1
    with open(type_csv[0]) as f:
        types = list(csv.DictReader(f))
    scale = cpu / wall if wall > 0 else 1.0
    total = sum(float(r["total_compute_time"]) for r in types) / a.steps
    print(f"{a.arch} {a.mode} bs {a.batch} {a.img}px, {a.threads} thread(s), settings {settings}, applied {applied}")
    print(f"first step {first_wall:.2f} s wall / {first_cpu:.2f} s CPU; profiled {a.steps} steps: "
          f"{1e3 * wall / a.steps:.1f} ms wall, {1e3 * cpu / a.steps:.1f} ms CPU per step (CPU/wall {scale:.2f}); "
          f"kernels {total:.1f} ms per step; load {os.getloadavg()[0]:.2f}")
    print(f"{'op type':28s} {'per step':>8s} {'ms/step':>9s} {'share':>6s} {'~CPU ms':>9s}")
    for r in sorted(types, key=lambda r: -float(r["total_compute_time"])):
        ms_step = float(r["total_compute_time"]) / a.steps
        print(f"{r['op_type']:28s} {int(r['type_occurrences']) // a.steps:8d} {ms_step:9.1f} "
              f"{100 * ms_step / total:5.1f}% {ms_step * scale:9.1f}")
    if a.top and detail_csv:
        with open(detail_csv[0]) as f:
            ops = list(csv.DictReader(f))
        print(f"\ntop {a.top} single ops (ms per step):")
        for r in sorted(ops, key=lambda r: -float(r["op_total_time(ms)"]))[:a.top]:
            print(f"{float(r['op_total_time(ms)']) / a.steps:9.2f}  {r['full_op_name']}")
    if not a.keep:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
