"""Per-op cost of the Mish variants, one variant per fresh process (CPU time = load-independent evidence).

    python research/mish_ops.py [--shape 8,64,112,112] [--threads 1] [--reps 10]

Variants: ``prim3`` (the project's Softplus-Tanh-Mul), ``nn`` (MindSpore's nn.Mish kernel: NaN above 44),
``aot`` (src.utils.fused_ops.FusedMish: the custom kernel); ``leaky`` (nn.LeakyReLU = Maximum(a * x, x)),
``prelu`` (ops.PReLU with a constant slope), ``leaky_aot`` (src.utils.fused_ops.FusedLeakyReLU),
``identity`` (the baseline: graph and copies only). Modes: forward only, and forward + backward
(``ms.grad`` with respect to the input, sens = ones). Prints one line per (variant, mode): median wall ms,
median CPU ms (all threads of the process), and the process's peak RSS.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(variant, mode, shape, threads, reps):
    sys.path.insert(0, ROOT)
    import numpy as np
    import mindspore as ms
    from mindspore import nn

    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    from src.utils.perf import apply_cpu_performance_settings
    apply_cpu_performance_settings(threads=threads)
    from src.utils.custom_op import Mish
    if variant == "prim3":
        act = Mish()
    elif variant == "nn":
        act = nn.Mish()
    elif variant == "leaky":
        act = nn.LeakyReLU(alpha=0.01)     # ops.leaky_relu: Maximum(alpha * x, x)
    elif variant == "prelu":
        w = ms.Tensor(np.full((shape[1],), 0.01, np.float32))
        prelu = ms.ops.PReLU()

        class _P(nn.Cell):
            def construct(self, x):
                return prelu(x, w)
        act = _P()
    elif variant == "identity":
        act = ms.nn.Identity()
    elif variant == "leaky_aot":
        from src.utils.fused_ops import FusedLeakyReLU
        act = FusedLeakyReLU(0.01)
    else:
        from src.utils.fused_ops import FusedMish
        act = FusedMish()
    x = ms.Tensor(np.random.default_rng(0).standard_normal(shape, dtype=np.float32) * 3)

    class Fwd(nn.Cell):
        def __init__(self):
            super().__init__()
            self.act = act

        def construct(self, x):
            return self.act(x)

    fwd = Fwd()
    if mode == "fwd":
        run = fwd
    else:
        grad = ms.grad(fwd)

        @ms.jit
        def run(x):
            return grad(x)
    run(x).asnumpy()
    walls, cpus = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        run(x).asnumpy()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return {"variant": variant, "mode": mode, "wall_ms": 1e3 * statistics.median(walls),
            "cpu_ms": 1e3 * statistics.median(cpus),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shape", default="8,64,112,112")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--variants", default="prim3,nn,aot")
    p.add_argument("--modes", default="fwd,fwdbwd")
    p.add_argument("--_child", default=None)
    a = p.parse_args()
    shape = tuple(int(v) for v in a.shape.split(","))
    if a._child:
        v, m = a._child.split(":")
        print("RESULT " + json.dumps(child(v, m, shape, a.threads, a.reps)), flush=True)
        return
    n = 1
    for d in shape:
        n *= d
    print(f"shape {shape} ({n / 1e6:.1f} M elements), {a.threads} thread(s), {a.reps} reps; load {os.getloadavg()[0]:.2f}")
    for m in a.modes.split(","):
        for v in a.variants.split(","):
            env = dict(os.environ, GLOG_v="3")
            out = subprocess.run([sys.executable, __file__, "--shape", a.shape, "--threads", str(a.threads),
                                  "--reps", str(a.reps), "--_child", f"{v}:{m}"], capture_output=True, text=True,
                                 env=env)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if not line:
                print(v, m, "FAILED", out.stderr[-1500:])
                continue
            r = json.loads(line[0][7:])
            print(f"{m:7s} {v:6s} wall {r['wall_ms']:8.1f} ms  cpu {r['cpu_ms']:8.1f} ms  "
                  f"({r['cpu_ms'] * 1e6 / n:.2f} ns/elem)  peak {r['peak_mb']:.0f} MB", flush=True)
    print(f"load at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
