"""The INT8 deployment table (issue 23): does post-training INT8 keep the FP32 model's accuracy, and how fast is it?

Question: for a trained checkpoint, (1) the top-1 of the FP32 ONNX model vs its INT8 models (onnxruntime QDQ:
everything quantized, or only the convolutions and the classifier; OpenVINO NNCF when installed) on held-out
images the calibration never saw, the logit agreement, and which layers quantize worst (ranked by the SQNR of
each activation, then kept in FP32); (2) calibrated probabilities and flip TTA on the same logits (ECE, NLL,
top-1; the temperature fitted on one half of the held-out images, ECE reported on the other half);
(3) with --speed, images/s and CPU-seconds per image at batch 1 and 32 for each runtime (FP32 and INT8 ONNX in
onnxruntime, OpenVINO FP32/INT8, MindSpore eval with the recommended inference settings, timm eager FP32), each
row in a fresh process.

    python research/int8_deploy.py --ckpt CKPT --train_dir D/train --val_dir D/val --name demo
        [--sizes trained,224] [--calib_images 300] [--calib_seed 0] [--variants full,convs]
        [--sensitivity 8] [--openvino] [--extra_site /path/to/openvino-site]
        [--speed --batches 1,32 --threads 2 --min_time 20 [--no_timm]] [--json out.json] [--md out.md]

``--sizes``: ``trained`` (the checkpoint's training size) and/or pixel sizes; at another size than trained the
FP32 model is exported at that size and the preprocessing scales with it (the record's resize rule). Speed
needs a quiet machine: the rows say the load average before and after. ``--extra_site`` appends a folder to
sys.path after the environment's packages (an openvino/nncf installed with ``pip install --target``).
Answers (figures, machine, seeds): docs/deployment.md.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("GLOG_v", "3")

WEIGHT_OPS = ("Conv", "Gemm", "MatMul")


# ---------------------------------------------------------------------------------------------- models
def _build(ckpt):
    """(network in eval mode, checkpoint_model_info, {"arch", "num_classes"}) of ``ckpt``, as eval builds it."""
    from src.archs import resolve_preprocess
    from src.checkpoint import ModelSpec, build_inference_model, checkpoint_model_info

    info = checkpoint_model_info(ckpt)
    spec = ModelSpec(checkpoint=ckpt, arch=info["arch"], num_classes=info["num_classes"],
                     preprocess=resolve_preprocess(info["arch"], recorded=info["preprocess"]),
                     class_names=info["class_names"], class_names_source=info["class_names_source"],
                     layout=info["layout"])
    net, _ = build_inference_model(spec)
    return net, info, {"arch": spec.arch, "num_classes": spec.num_classes}


def _trained_size(info, arch):
    from src.archs import resolve_preprocess

    return int(resolve_preprocess(arch, recorded=info["preprocess"])["image_size"].split(",")[0])


def export_fp32(ckpt, size, batch, folder):
    """FP32 ONNX of ``ckpt`` at ``size`` px and a fixed ``batch``, with its model record; returns (path, record)."""
    import numpy as np

    from src.deploy.record import build_model_record, write_model_record
    from src.export_utils import export_network

    net, info, resolved = _build(ckpt)
    shape = [batch, 3, size, size]
    path = export_network(net, np.zeros(shape, np.float32), os.path.join(folder, f"fp32_{size}px_b{batch}"), "ONNX")
    record = build_model_record(ckpt, resolved["arch"], resolved["num_classes"], shape, info=info,
                                file_format="ONNX")
    write_model_record(path, record)
    return path, record


def held_out(val_dir, record):
    """(images float32 NCHW, labels) of the whole validation folder, eval-preprocessed as the record says."""
    import numpy as np

    from src.data.pipeline import create_dataset
    from src.deploy.record import record_preprocess

    size, mode, pct = record_preprocess(record)
    bundle = create_dataset(val_dir, size, 50, mode="eval", eval_resize=mode, crop_pct=pct,
                            class_to_idx={n: i for i, n in enumerate(record["class_names"])}
                            if record.get("class_names") else None)
    xs, ys = zip(*bundle.dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def mindspore_setup(threads):
    """eval.py's CPU settings (oneDNN capped at AVX2 on AVX-512 CPUs: its 3x3 convolutions are otherwise
    its scalar reference kernel, 20-150x slower), before MindSpore runs anything; returns the network rewrites."""
    from src.utils.perf import apply_cpu_performance_settings, recommended_settings, split_settings

    process, network = split_settings(recommended_settings("infer"))
    apply_cpu_performance_settings(threads=threads or None, **process)
    return network


def mindspore_logits(ckpt, images, network_settings, batch=50):
    """MindSpore eval's logits (the recommended inference rewrites: BN folded, fused Mish)."""
    import numpy as np
    import mindspore as ms

    from src.utils.perf import prepare_network

    net, _, _ = _build(ckpt)
    prepare_network(net, train=False, **network_settings)
    return np.concatenate([net(ms.Tensor(images[i:i + batch])).asnumpy() for i in range(0, len(images), batch)])


def openvino_logits(path, images, threads=0):
    import numpy as np
    import openvino as ov

    core = ov.Core()
    props = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        props["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = core.compile_model(core.read_model(path), "CPU", props)
    request = compiled.create_infer_request()
    out = []
    for i in range(len(images)):
        request.infer({0: images[i:i + 1]})
        out.append(np.array(request.get_output_tensor(0).data))
    return np.concatenate(out)


# ---------------------------------------------------------------------------------------------- measures
def metrics(logits, labels, reference=None):
    """top-1, top-5, ECE (15 bins), NLL; against ``reference`` logits: top-1 agreement and logit differences."""
    import numpy as np

    from src.analysis.calibration import reliability

    rel = reliability(logits, labels)
    order = np.argsort(-logits, axis=1)
    out = {"top1": float((order[:, 0] == labels).mean()),
           "top5": float(np.any(order[:, :5] == labels[:, None], axis=1).mean()),
           "ece": rel["ece"], "nll": rel["nll"], "images": int(len(labels))}
    if reference is not None:
        d = np.abs(logits.astype(np.float64) - reference)
        out.update(agreement=float((logits.argmax(1) == reference.argmax(1)).mean()), max_abs_diff=float(d.max()),
                   rel_mean_abs_diff=float(d.mean() / np.abs(reference).mean()))
    return out


def calibration_and_tta(fp32_logits, flipped_logits, labels):
    """Temperature fitted on the even-indexed held-out images, ECE/NLL on the odd ones; flip TTA top-1/ECE."""
    import numpy as np

    from src.analysis.calibration import fit_temperature, reliability

    fit_idx, test_idx = np.arange(0, len(labels), 2), np.arange(1, len(labels), 2)
    fit = fit_temperature(fp32_logits[fit_idx], labels[fit_idx])
    before = reliability(fp32_logits[test_idx], labels[test_idx])
    after = reliability(fp32_logits[test_idx], labels[test_idx], temperature=fit.temperature)
    tta = (fp32_logits + flipped_logits) / 2
    tta_fit = fit_temperature(tta[fit_idx], labels[fit_idx])
    tta_after = reliability(tta[test_idx], labels[test_idx], temperature=tta_fit.temperature)
    plain_all, tta_all = reliability(fp32_logits, labels), reliability(tta, labels)
    return {"temperature": fit.temperature, "hit_bound": fit.hit_bound, "fit_images": int(len(fit_idx)),
            "test_images": int(len(test_idx)), "ece_before": before["ece"], "ece_after": after["ece"],
            "nll_before": before["nll"], "nll_after": after["nll"],
            "top1_plain": plain_all["accuracy_top1"], "top1_tta": tta_all["accuracy_top1"],
            "ece_plain": plain_all["ece"], "ece_tta": tta_all["ece"], "tta_temperature": tta_fit.temperature,
            "ece_tta_after": tta_after["ece"]}


def layer_of(model, node_name):
    """The network layer a node of the exported graph belongs to: the parameter name of its own weight, or of
    the nearest convolution above it (MindSpore exports parameter names; BN folding prefixes them)."""
    weights = {i.name for i in model.graph.initializer}
    by_name = {n.name: n for n in model.graph.node}
    producer = {out: n for n in model.graph.node for out in n.output}
    node, hops = by_name.get(node_name), 0
    start = node.op_type if node is not None else "?"
    while node is not None and hops < 8:
        for name in node.input:
            if name in weights and name.endswith("weight") or "_W_" in name:
                return name.replace("ConvBnFusion_W_", "") + ("" if hops == 0 else f", the {start} after it")
        node = next((producer[i] for i in node.input if i in producer), None)
        hops += 1
    return "?"


def sensitivity(fp32_pre, int8_path, batches, worst):
    """The ``worst`` activations by the SQNR (dB) of their own quantization (float tensor vs its Q/DQ), from
    onnxruntime's qdq_loss_debug over ``batches``; [(tensor, producing node, op type, SQNR)]."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization.qdq_loss_debug import (collect_activations, compute_activation_error,
                                                         create_activation_matching,
                                                         modify_model_output_intermediate_tensors)

    class Reader(CalibrationDataReader):
        def __init__(self, name):
            self.name, self.it = name, iter(batches)

        def get_next(self):
            b = next(self.it, None)
            return None if b is None else {self.name: b}

    model = onnx.load(fp32_pre, load_external_data=False)
    name = model.graph.input[0].name
    producer = {out: (n.name, n.op_type) for n in model.graph.node for out in n.output}
    with tempfile.TemporaryDirectory() as tmp:
        aug_f, aug_q = os.path.join(tmp, "f.onnx"), os.path.join(tmp, "q.onnx")
        modify_model_output_intermediate_tensors(fp32_pre, aug_f)
        modify_model_output_intermediate_tensors(int8_path, aug_q)
        acts_f = collect_activations(aug_f, Reader(name))
        acts_q = collect_activations(aug_q, Reader(name))
    errors = compute_activation_error(create_activation_matching(acts_q, acts_f))
    ranked = sorted(((v["qdq_err"], t) for t, v in errors.items() if "qdq_err" in v and t in producer))
    return [(t, producer[t][0], producer[t][1], float(s), layer_of(model, producer[t][0])) for s, t in ranked[:worst]]


def _say(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def accuracy_rows(a, size, folder):
    """Every accuracy row of one (checkpoint, size)."""
    import numpy as np

    from src.deploy.quantize import (calibration_batches, preprocessed_graph, quantize_onnx, quantize_openvino,
                                     run_onnx_batches)
    from src.deploy.tta import flip_images

    fp32, record = export_fp32(a.ckpt, size, 1, folder)
    images, labels = held_out(a.val_dir, record)
    one = [images[i:i + 1] for i in range(len(images))]
    t0 = time.time()
    ref = run_onnx_batches(fp32, one, threads=a.threads).astype(np.float64)
    rows = [dict(model="FP32 ONNX (onnxruntime)", **metrics(ref, labels))]
    _say(f"{size} px: FP32 ONNX top-1 {rows[0]['top1']:.4f} on {len(labels)} held-out images")
    ms_logits = mindspore_logits(a.ckpt, images, a.network_settings)
    rows.append(dict(model="FP32 MindSpore eval", **metrics(ms_logits, labels, ref)))
    flipped = run_onnx_batches(fp32, [flip_images(b) for b in one], threads=a.threads)
    extra = calibration_and_tta(ref, flipped, labels)
    batches = calibration_batches(a.train_dir, record, a.calib_images, 1, a.calib_seed)
    pre = preprocessed_graph(fp32, os.path.join(folder, f"pre_{size}.onnx"))
    full = None
    for variant in a.variants:
        path = os.path.join(folder, f"int8_{variant}_{size}px.onnx")
        quantize_onnx(fp32, path, batches, calibrate_method=a.calib_method,
                      op_types=WEIGHT_OPS if variant == "convs" else None)
        if variant == "full":
            full = path
        label = {"full": "INT8 ONNX, all ops (QDQ)", "convs": "INT8 ONNX, Conv/Gemm only"}[variant]
        rows.append(dict(model=label, path=path, **metrics(run_onnx_batches(path, one, threads=a.threads), labels,
                                                           ref)))
        _say(f"{size} px: {label} top-1 {rows[-1]['top1']:.4f}, agreement {rows[-1]['agreement']:.4f}")
    worst = []
    if a.sensitivity and full:
        worst = sensitivity(pre, full, [images[i:i + 1] for i in range(0, min(len(images), 64))], a.sensitivity)
        path = os.path.join(folder, f"int8_full_minus{len(worst)}_{size}px.onnx")
        quantize_onnx(fp32, path, batches, calibrate_method=a.calib_method, exclude_nodes=[w[1] for w in worst])
        rows.append(dict(model=f"INT8 ONNX, all ops but the {len(worst)} worst in FP32", path=path,
                         excluded=[w[1] for w in worst],
                         **metrics(run_onnx_batches(path, one, threads=a.threads), labels, ref)))
    if a.openvino:
        rows.append(dict(model="FP32 OpenVINO", **metrics(openvino_logits(fp32, images, a.threads), labels, ref)))
        xml = os.path.join(folder, f"int8_ov_{size}px.xml")
        quantize_openvino(fp32, xml, batches)
        rows.append(dict(model="INT8 OpenVINO (NNCF)", path=xml,
                         **metrics(openvino_logits(xml, images, a.threads), labels, ref)))
    return {"size": size, "fp32": fp32, "record": {k: record[k] for k in ("arch", "num_classes", "preprocess")},
            "rows": rows, "calibration_tta": extra, "worst_activations": worst,
            "calibration_images": int(sum(len(b) for b in batches)), "seconds": round(time.time() - t0, 1)}


# ---------------------------------------------------------------------------------------------- speed
def _time(run, min_time, min_steps=3, max_steps=200):
    run()
    walls, cpus = [], []
    while len(walls) < min_steps or (sum(walls) < min_time and len(walls) < max_steps):
        t, c = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), len(walls)


def timed_child(spec):
    """One speed row in this (fresh) process: spec = {kind, path|ckpt|arch, batch, size, threads, min_time}."""
    import numpy as np

    kind, batch, size, threads = spec["kind"], spec["batch"], spec["size"], spec["threads"]
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    if kind == "ort":
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(spec["path"], opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name

        def run():
            return sess.run(None, {name: x})[0]
    elif kind == "ov":
        import openvino as ov
        core = ov.Core()
        compiled = core.compile_model(core.read_model(spec["path"]), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()

        def run():
            request.infer({0: x})
            return request.get_output_tensor(0).data
    elif kind == "ms":
        import mindspore as ms

        from src.utils.perf import apply_cpu_performance_settings, prepare_network, recommended_settings, \
            split_settings
        from src.utils.runtime import setup_device
        setup_device("CPU", graph_mode=True)
        process, network = split_settings(recommended_settings("infer"))
        apply_cpu_performance_settings(threads=threads, **process)
        net, _, _ = _build(spec["ckpt"])
        prepare_network(net, train=False, **network)
        tx = ms.Tensor(x)

        def run():
            return net(tx).asnumpy()
    elif kind == "timm":
        import timm
        import torch

        from src.archs import get_arch_spec
        torch.set_num_threads(threads)
        arch = get_arch_spec(spec["arch"])
        model = timm.create_model(arch.timm_model, pretrained=False, num_classes=spec["num_classes"],
                                  **dict(arch.timm_kwargs)).eval()
        tx = torch.from_numpy(x)

        def run():
            with torch.no_grad():
                return model(tx)
    else:
        raise ValueError(kind)
    wall, cpu, steps = _time(run, spec["min_time"])
    return {"img_s": batch / wall, "cpu_s_per_img": cpu / batch, "steps": steps, "peak_mb": _peak_mb()}


def _peak_mb():
    """This process's peak resident memory: VmHWM (reset by exec; ``ru_maxrss`` keeps the forking parent's)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def speed_rows(a, size, folder, arch, num_classes):
    """Export + quantize one model per batch size, then time each runtime in a fresh process."""
    from src.deploy.quantize import calibration_batches, quantize_onnx, quantize_openvino

    rows = []
    for batch in a.batch_list:
        fp32, record = export_fp32(a.ckpt, size, batch, folder)
        batches = calibration_batches(a.train_dir, record, a.calib_images, batch, a.calib_seed)
        specs = [("FP32 ONNX (onnxruntime)", {"kind": "ort", "path": fp32})]
        for variant in a.variants:
            path = os.path.join(folder, f"int8_{variant}_{size}px_b{batch}.onnx")
            quantize_onnx(fp32, path, batches, op_types=WEIGHT_OPS if variant == "convs" else None)
            specs.append((f"INT8 ONNX {variant} (onnxruntime)", {"kind": "ort", "path": path}))
        if a.openvino:
            xml = os.path.join(folder, f"int8_ov_{size}px_b{batch}.xml")
            quantize_openvino(fp32, xml, batches)
            specs += [("FP32 OpenVINO", {"kind": "ov", "path": fp32}), ("INT8 OpenVINO (NNCF)", {"kind": "ov", "path": xml})]
        specs.append(("FP32 MindSpore eval (BN folded, fused)", {"kind": "ms", "ckpt": a.ckpt}))
        if not a.no_timm:
            specs.append(("FP32 timm eager (PyTorch)", {"kind": "timm", "arch": arch, "num_classes": num_classes}))
        for label, spec in specs:
            spec.update(batch=batch, size=size, threads=a.threads, min_time=a.min_time)
            load0 = os.getloadavg()[0]
            env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
            cmd = [sys.executable, os.path.abspath(__file__), "--_time", json.dumps(spec)]
            if a.extra_site:
                cmd += ["--extra_site", a.extra_site]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            result = json.loads(line[-1][7:]) if line else {"error": proc.stderr[-500:]}
            rows.append(dict(model=label, batch=batch, size=size, load_before=load0, load_after=os.getloadavg()[0],
                             **result))
            print(json.dumps(rows[-1]), flush=True)
    return rows


# ---------------------------------------------------------------------------------------------- report
def markdown(report):
    lines = []
    for acc in report["accuracy"]:
        lines.append(f"\n**{report['name']}, {acc['record']['arch']}, {acc['size']} px** (held-out "
                     f"{acc['rows'][0]['images']} images, calibration {acc['calibration_images']} training images, "
                     f"seed {report['calib_seed']})\n")
        lines.append("| model | top-1 | vs FP32 ONNX | agreement | max abs logit diff | ECE | NLL |")
        lines.append("|---|---|---|---|---|---|---|")
        base = acc["rows"][0]["top1"]
        for r in acc["rows"]:
            agree = f"{100 * r['agreement']:.1f}%" if "agreement" in r else "-"
            diff = f"{r['max_abs_diff']:.3g}" if "max_abs_diff" in r else "-"
            lines.append(f"| {r['model']} | {100 * r['top1']:.2f}% | {100 * (r['top1'] - base):+.2f} | {agree} | "
                         f"{diff} | {r['ece']:.4f} | {r['nll']:.4f} |")
        c = acc["calibration_tta"]
        lines.append(f"\nTemperature {c['temperature']:.3f} (fitted on {c['fit_images']} held-out images): ECE "
                     f"{c['ece_before']:.4f} -> {c['ece_after']:.4f}, NLL {c['nll_before']:.4f} -> "
                     f"{c['nll_after']:.4f} on the other {c['test_images']}. Flip TTA: top-1 "
                     f"{100 * c['top1_plain']:.2f}% -> {100 * c['top1_tta']:.2f}%, ECE {c['ece_plain']:.4f} -> "
                     f"{c['ece_tta']:.4f}.")
        if acc["worst_activations"]:
            lines.append("\nWorst-quantized activations (SQNR of their own Q/DQ, dB): " + ", ".join(
                f"{w[2]} `{w[1]}` {w[3]:.1f}" + (f" ({w[4]})" if len(w) > 4 else "") for w in acc["worst_activations"]))
    if report.get("speed"):
        lines.append("\n| model | px | batch | img/s | CPU s/img | peak MB | load before/after |")
        lines.append("|---|---|---|---|---|---|---|")
        for r in report["speed"]:
            if "error" in r:
                lines.append(f"| {r['model']} | {r['size']} | {r['batch']} | error | | | |")
                continue
            lines.append(f"| {r['model']} | {r['size']} | {r['batch']} | {r['img_s']:.2f} | {r['cpu_s_per_img']:.4f} | "
                         f"{r['peak_mb']:.0f} | {r['load_before']:.1f}/{r['load_after']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt")
    p.add_argument("--train_dir")
    p.add_argument("--val_dir")
    p.add_argument("--name", default="")
    p.add_argument("--sizes", default="trained,224")
    p.add_argument("--calib_images", type=int, default=300)
    p.add_argument("--calib_seed", type=int, default=0)
    p.add_argument("--calib_method", default="minmax")
    p.add_argument("--variants", default="full,convs")
    p.add_argument("--sensitivity", type=int, default=8, help="worst activations to rank and keep in FP32 (0: off)")
    p.add_argument("--openvino", action="store_true")
    p.add_argument("--extra_site", default="")
    p.add_argument("--speed", action="store_true")
    p.add_argument("--no_accuracy", action="store_true")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min_time", type=float, default=20.0)
    p.add_argument("--no_timm", action="store_true")
    p.add_argument("--workdir", default="")
    p.add_argument("--json", default="")
    p.add_argument("--md", default="")
    p.add_argument("--_time", default="")
    a = p.parse_args(argv)
    if a.extra_site:
        sys.path.append(a.extra_site)
    if a._time:
        print("RESULT " + json.dumps(timed_child(json.loads(a._time))), flush=True)
        return 0
    for key in ("ckpt", "train_dir", "val_dir"):
        if not getattr(a, key):
            p.error(f"--{key} is required")
    a.network_settings = mindspore_setup(a.threads)
    a.variants = [v for v in a.variants.split(",") if v]
    a.batch_list = [int(b) for b in a.batches.split(",")]
    _, info, resolved = _build(a.ckpt)
    trained = _trained_size(info, resolved["arch"])
    sizes = [trained if s == "trained" else int(s) for s in a.sizes.split(",")]
    sizes = list(dict.fromkeys(sizes))
    folder = a.workdir or tempfile.mkdtemp(prefix="int8_deploy_")
    os.makedirs(folder, exist_ok=True)
    import platform
    report = {"name": a.name or os.path.basename(os.path.dirname(os.path.abspath(a.val_dir))), "ckpt": a.ckpt,
              "arch": resolved["arch"], "trained_size": trained, "calib_seed": a.calib_seed,
              "calib_images": a.calib_images, "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "load_start": os.getloadavg(), "accuracy": [], "speed": []}
    if not a.no_accuracy:
        for size in sizes:
            report["accuracy"].append(accuracy_rows(a, size, folder))
            print(markdown(dict(report, accuracy=report["accuracy"][-1:], speed=[])), flush=True)
    if a.speed:
        for size in sizes:
            report["speed"] += speed_rows(a, size, folder, resolved["arch"], resolved["num_classes"])
    report["load_end"] = os.getloadavg()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    text = markdown(report)
    if a.md:
        with open(a.md, "w") as f:
            f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
