"""CPU serving paths for an exported network: MindSpore eval vs the exported ONNX in onnxruntime and
OpenVINO, one fresh process per (runtime, configuration, batch): CPU-seconds per image, wall ms per
batch, first-call (load + compile) time, peak RSS, and the logits' max |difference| from MindSpore eval.

    python research/serving.py [--arch cspdarknet53] [--img 224] [--batches 1,32]
        [--configs ms:2,ort-all:2,ort-all:1,ort-basic:2,ort-disable:2,ort-all-nospin:2,ov:2,ov:1] [--min_time 10]

Configurations (``name:threads``): ``ms`` = MindSpore GRAPH eval with the recommended inference settings
(BN folded, fused activations, oneDNN AVX2 cap on AVX-512); ``ms-plain`` = MindSpore eval as built;
``ort-all|extended|basic|disable`` = onnxruntime CPUExecutionProvider at that graph optimisation level
(``-nospin``: intra-op threads do not spin-wait); ``ov`` = OpenVINO CPU (latency hint, float32 precision hint); ``ov-auto`` = OpenVINO's default precision
(bfloat16 on CPUs with AVX512_BF16 or AMX: faster, ~1e-2 relative error). The ONNX files
come from ``src.export_utils.export_network`` on the same randomly initialised network (seed 0, zoo init,
BN statistics made non-trivial), one file per batch size (fixed shapes), in a temporary folder.
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("GLOG_v", "3")


def _net(arch, num_classes=1000):
    import numpy as np
    from mindspore import Tensor

    from src.image_classification import create_model

    net = create_model(arch, num_classes=num_classes, seed=0)
    rng = np.random.default_rng(1)
    for p in net.get_parameters():  # non-trivial BN statistics, so that folding is exercised
        if p.name.endswith("moving_mean"):
            p.set_data(Tensor(rng.normal(0, 0.1, p.shape).astype(np.float32)))
        elif p.name.endswith("moving_variance"):
            p.set_data(Tensor(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
    net.set_train(False)
    return net


def _inputs(batch, img):
    import numpy as np
    return np.random.default_rng(0).standard_normal((batch, 3, img, img)).astype(np.float32)


def _time(run, min_time, min_steps=3, max_steps=200):
    t, c = time.perf_counter(), time.process_time()
    out = run()
    first = time.perf_counter() - t
    walls, cpus = [], []
    while len(walls) < min_steps or (sum(walls) < min_time and len(walls) < max_steps):
        t, c = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return out, first, statistics.median(walls), statistics.median(cpus), len(walls)


def child(cfg, batch, a, onnx_path, ref_path):
    import numpy as np

    name, _, threads = cfg.partition(":")
    threads = int(threads or 2)
    x = _inputs(batch, a.img)
    t_load = time.perf_counter()
    if name.startswith("ms"):
        from src.utils.perf import apply_cpu_performance_settings, prepare_network, recommended_settings, \
            split_settings
        from src.utils.runtime import setup_device
        import mindspore as ms

        setup_device("CPU", graph_mode=True)
        process, network = split_settings(recommended_settings("infer"))
        apply_cpu_performance_settings(threads=threads, **process)
        net = _net(a.arch)
        if name == "ms":
            prepare_network(net, train=False, **network)
        tx = ms.Tensor(x)

        def run():
            return net(tx).asnumpy()
    elif name.startswith("ort"):
        import onnxruntime as ort

        level = name.split("-")[1]
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                         "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                         "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                         "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[level]
        if name.endswith("nospin"):
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(onnx_path, sess_options=opts, providers=["CPUExecutionProvider"])
        iname = sess.get_inputs()[0].name

        def run():
            return sess.run(None, {iname: x})[0]
    elif name.startswith("ov"):
        import openvino as ov

        core = ov.Core()
        model = core.read_model(onnx_path)
        props = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if name != "ov-auto":  # OpenVINO's default on CPUs with AVX512_BF16 / AMX is bfloat16 inference
            props["INFERENCE_PRECISION_HINT"] = "f32"
        compiled = core.compile_model(model, "CPU", props)
        request = compiled.create_infer_request()

        def run():
            request.infer({0: x})
            return np.array(request.get_output_tensor(0).data)
    else:
        raise ValueError(cfg)
    load_s = time.perf_counter() - t_load
    out, first, wall, cpu, steps = _time(run, a.min_time)
    diff = None
    if ref_path and os.path.exists(ref_path):
        diff = float(np.max(np.abs(out - np.load(ref_path))))
    return {"config": cfg, "batch": batch, "load_s": load_s, "first_s": first, "wall_ms": 1e3 * wall,
            "cpu_s_per_image": cpu / batch, "steps": steps, "max_abs_diff": diff,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def prepare(a, folder):
    """Exports one ONNX file per batch size; the reference logits are MindSpore eval of the same network with
    ``src.export_utils.use_accurate_mish`` (float32-accurate tanh; MindSpore's CPU Tanh is off by up to 1e-4)."""
    import numpy as np
    import mindspore as ms

    from src.export_utils import export_network
    from src.utils.runtime import setup_device

    setup_device("CPU", graph_mode=True)
    paths = {}
    for b in a.batch_list:
        from src.export_utils import use_accurate_mish

        x = _inputs(b, a.img)
        ref = _net(a.arch)
        use_accurate_mish(ref)
        np.save(os.path.join(folder, f"ref_{b}.npy"), ref(ms.Tensor(x)).asnumpy())
        net = _net(a.arch)
        paths[b] = export_network(net, x, os.path.join(folder, f"net_b{b}"), "ONNX")
    return paths


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="cspdarknet53")
    p.add_argument("--img", type=int, default=224)
    p.add_argument("--batches", default="1,32")
    p.add_argument("--configs", default="ms:2,ms:1,ort-all:2,ort-all:1,ort-all-nospin:2,ort-basic:2,ort-disable:2,"
                                        "ov:2,ov:1,ov-auto:2")
    p.add_argument("--min_time", type=float, default=10.0)
    p.add_argument("--_child", default=None)
    p.add_argument("--_onnx", default=None)
    p.add_argument("--_ref", default=None)
    p.add_argument("--_prepare", default=None)
    a = p.parse_args()
    a.batch_list = [int(b) for b in a.batches.split(",")]
    if a._prepare:
        print("PATHS " + json.dumps({str(k): v for k, v in prepare(a, a._prepare).items()}), flush=True)
        return 0
    if a._child:
        cfg, _, b = a._child.rpartition("@")
        print("RESULT " + json.dumps(child(cfg, int(b), a, a._onnx, a._ref)), flush=True)
        return 0
    folder = tempfile.mkdtemp(prefix="serving_")
    try:
        out = subprocess.run([sys.executable, __file__, "--arch", a.arch, "--img", str(a.img), "--batches", a.batches,
                              "--_prepare", folder], capture_output=True, text=True)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("PATHS ")]
        if not line:
            print("export failed:", out.stderr[-3000:])
            return 1
        paths = {int(k): v for k, v in json.loads(line[0][6:]).items()}
        print(f"{a.arch} {a.img}px; load average {os.getloadavg()[0]:.2f}", flush=True)
        print(f"{'config':18s} {'batch':>5s} {'CPU s/img':>9s} {'wall ms/batch':>13s} {'img/s':>7s} {'load s':>7s} "
              f"{'1st s':>6s} {'peak MB':>8s} {'max|diff|':>9s} steps load")
        for b in a.batch_list:
            for cfg in a.configs.split(","):
                env = dict(os.environ)
                name, _, threads = cfg.partition(":")
                env["OMP_NUM_THREADS"] = threads or "2"
                load0 = os.getloadavg()[0]
                r = subprocess.run([sys.executable, __file__, "--arch", a.arch, "--img", str(a.img),
                                    "--min_time", str(a.min_time), "--_child", f"{cfg}@{b}", "--_onnx", paths[b],
                                    "--_ref", os.path.join(folder, f"ref_{b}.npy")], capture_output=True, text=True,
                                   env=env)
                line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
                if not line:
                    print(f"{cfg:18s} {b:5d} FAILED {r.stderr.strip()[-400:]}", flush=True)
                    continue
                q = json.loads(line[0][7:])
                diff = "-" if q["max_abs_diff"] is None else f"{q['max_abs_diff']:.1e}"
                print(f"{cfg:18s} {b:5d} {q['cpu_s_per_image']:9.4f} {q['wall_ms']:13.1f} "
                      f"{1e3 * b / q['wall_ms']:7.2f} {q['load_s']:7.2f} {q['first_s']:6.2f} {q['peak_mb']:8.0f} "
                      f"{diff:>9s} {q['steps']:5d} {load0:.1f}-{os.getloadavg()[0]:.1f}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
