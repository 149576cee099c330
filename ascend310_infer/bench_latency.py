"""Per-image latency of the C++ app (ORT_CPU build) versus onnxruntime from Python, same model, same images,
same thread count. Inference time only (the zoo's metric: one Predict/Run per image, preprocessing excluded),
plus the preprocessing time of each side.

    python ascend310_infer/bench_latency.py --model=net.onnx --images=DIR [--app=ascend310_infer/out/main]
        [--threads=1] [--resize=256] [--crop=224] [--repeat=3]

The Python side preprocesses with MindSpore's eval transforms (src/data/transforms.py when importable) and times
session.run; the C++ side's times are read from its per-image report. Each side runs the image list
`repeat` times, the two sides alternating pass by pass, and the first pass is dropped as warm-up when
repeat > 1. Note that the app's first image includes ONNX Runtime's lazy initialisation, which the
warm-up pass of the Python side hides; the app is timed as it runs in the flow (one process per pass).
"""
import argparse
import os
import resource
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
IMAGE_EXTS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def list_images(folder):
    files = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            files += [os.path.join(path, n) for n in sorted(os.listdir(path)) if n.lower().endswith(IMAGE_EXTS)]
        elif name.lower().endswith(IMAGE_EXTS):
            files.append(path)
    return sorted(files)


def eval_ops(resize, crop):
    try:
        from src.data.transforms import eval_transforms
        return eval_transforms(crop, eval_resize="squash", crop_pct=crop / resize)
    except ImportError:
        import mindspore.dataset.vision as vision
        return [vision.Decode(), vision.Resize((resize, resize)), vision.CenterCrop(crop),
                vision.Normalize([123.675, 116.28, 103.53], [58.395, 57.12, 57.375]), vision.HWC2CHW()]


class PythonOrt:
    def __init__(self, model, threads, resize, crop):
        import onnxruntime as ort
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name
        self.ops = eval_ops(resize, crop)
        self.cpu_ms = []

    def one_pass(self, images):
        infer, pre = [], []
        for path in images:
            c0 = time.process_time()
            t0 = time.perf_counter()
            x = np.fromfile(path, dtype=np.uint8)
            for op in self.ops:
                x = op(x)
            x = np.ascontiguousarray(x, dtype=np.float32)[None]
            t1 = time.perf_counter()
            self.session.run(None, {self.name: x})
            t2 = time.perf_counter()
            self.cpu_ms.append((time.process_time() - c0) * 1e3)
            pre.append((t1 - t0) * 1e3)
            infer.append((t2 - t1) * 1e3)
        return infer, pre


def cpp_pass(app, model, folder, threads, resize, crop, tmp):
    """One run of the app over the folder: (per-image inference ms as the app's average, preprocessing ms,
    the app's median inference ms)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([app, f"--model_path={model}", f"--dataset_path={folder}", f"--threads={threads}",
                          f"--resize={resize}", f"--crop={crop}", f"--result_path={tmp}/res", f"--time_path={tmp}/time"],
                         capture_output=True, text=True, check=True).stdout
    match = re.search(r"NN inference cost average time: ([0-9.e+-]+) ms of infer_count (\d+)", out)
    n = int(match.group(2))
    pre = float(re.search(r"preprocessing average ([0-9.e+-]+) ms", out).group(1))
    median = float(re.search(r"median ([0-9.e+-]+) ms", out).group(1))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_ms = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1e3 / n
    return [float(match.group(1))] * n, [pre] * n, median, cpu_ms


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--app", default=os.path.join(ROOT, "ascend310_infer", "out", "main"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    images = list_images(args.images)
    if not images:
        sys.exit(f"no images in {args.images}")
    python = PythonOrt(args.model, args.threads, args.resize, args.crop)
    c_inf, c_pre, p_inf, p_pre, c_med, c_cpu = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):   # alternate the two sides so that load changes hit both alike
            ci, cp, cm, cc = cpp_pass(args.app, args.model, args.images, args.threads, args.resize, args.crop, tmp)
            python.cpu_ms = []
            pi, pp = python.one_pass(images)
            if args.repeat == 1 or r > 0:   # the first pass is warm-up
                c_inf += ci
                c_pre += cp
                c_med.append(cm)
                c_cpu.append(cc)
                p_inf += pi
                p_pre += pp
    print(f"model {args.model}, {len(images)} images, input {args.crop}x{args.crop}, threads {args.threads}")
    print(f"C++ app (ORT_CPU)    : inference mean {np.mean(c_inf):8.3f} ms/image, median {np.median(c_med):8.3f} "
          f"(median of the passes' medians), preprocessing {np.mean(c_pre):6.3f} ms/image; "
          f"CPU time {np.mean(c_cpu):8.3f} ms/image (whole process: load, preprocessing, inference)")
    print(f"onnxruntime (Python) : inference mean {np.mean(p_inf):8.3f} ms/image, median {np.median(p_inf):8.3f}, "
          f"preprocessing {np.mean(p_pre):6.3f} ms/image; CPU time {np.mean(python.cpu_ms):8.3f} ms/image "
          f"(preprocessing + inference, last pass)")


if __name__ == "__main__":
    main()
