"""End-to-end tests of the C++ inference app (ascend310_infer/).

What runs here (CPU only):
  * the ORT_CPU build (ONNX Runtime C++ API), built once per source hash into a cache folder;
  * the app on real photos (scikit-image's CC0 data set, re-encoded as JPEG/PNG of odd sizes, one grayscale,
    one RGBA, one with an EXIF rotation tag) in class folders;
  * its preprocessing against MindSpore's eval transforms (Decode, Resize((R, R)), CenterCrop(C), Normalize,
    HWC2CHW): bit for bit;
  * its logits against a Python reference on the same images (fp32: 1e-3 abs; fp16 head: one fp16 step),
    same top-1;
  * the whole scripts/run_infer_310.sh flow and its acc.log;
  * the model record: with no size flags the app preprocesses as the record says (shorter-side resize
    included, bit for bit), prints class names, refuses a size that does not fit naming the real option, reads
    a sidecar, and runs the INT8 (QDQ) model of tools/quantize_int8.py;
  * the ASCEND310 sources, compiled with -fsyntax-only -Werror against the MindSpore C++ API headers.

Prerequisites: bash .ci/install_cxx_deps.sh (OpenCV -dev packages, ONNX Runtime headers + library, the
MindSpore C++ API headers). Without them the tests fail and say so; SKIP_CXX_INFER=1 skips them instead.
Small inputs (resize 64, crop 56) keep the module well under a minute once the build is cached.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "ascend310_infer"
CACHE = Path(os.environ.get("CSPDARKNET53_CXX_CACHE", str(Path.home() / ".cache" / "cspdarknet53-cxx")))
ORT_ROOT = Path(os.environ.get("ORT_ROOT", str(CACHE / "onnxruntime")))
MS_API_ROOT = CACHE / "mindspore-lite-2.0.0" / "mindspore_lite"
RESIZE, CROP = 64, 56
NUM_CLASSES = 1000
MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
INSTALL_HINT = "run: bash .ci/install_cxx_deps.sh (or set SKIP_CXX_INFER=1 to skip the C++ app tests)"


def _missing_deps():
    missing = []
    for tool in ("cmake", "make", "c++"):
        if shutil.which(tool) is None:
            missing.append(tool)
    if not any(Path(d, "opencv2", "core.hpp").exists() for d in ("/usr/include/opencv4", "/usr/local/include/opencv4")):
        missing.append("OpenCV headers (libopencv-core-dev, libopencv-imgproc-dev, libopencv-imgcodecs-dev)")
    if not (ORT_ROOT / "include" / "onnxruntime_cxx_api.h").exists() or not list(
        ORT_ROOT.glob("lib/libonnxruntime.so*")
    ):
        missing.append(f"ONNX Runtime headers/library under {ORT_ROOT}")
    return missing


def _require_deps():
    missing = _missing_deps()
    if missing:
        message = "C++ app prerequisites missing: " + "; ".join(missing) + ". " + INSTALL_HINT
        if os.environ.get("SKIP_CXX_INFER") == "1":
            pytest.skip(message)
        pytest.fail(message)


# ------------------------------------------------------------------------------------------------ build
def _source_hash():
    h = hashlib.sha256()
    files = [APP_DIR / "CMakeLists.txt", APP_DIR / "build.sh"]
    files += sorted((APP_DIR / "inc").glob("*")) + sorted((APP_DIR / "src").glob("*"))
    for f in files:
        h.update(str(f.relative_to(APP_DIR)).encode())
        h.update(f.read_bytes())
    h.update(str(ORT_ROOT.resolve()).encode())
    h.update(str(APP_DIR).encode())   # a CMake build folder belongs to one source folder (CI clones elsewhere)
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def app_build(run_script):
    """ORT_CPU build of the app, cached by source hash: (build dir, path of the binary)."""
    _require_deps()
    build_dir = CACHE / "builds" / f"ort_cpu-{_source_hash()}"
    binary = build_dir / "main"
    stamp = build_dir / "BUILD_OK"
    if not stamp.exists():
        shutil.rmtree(build_dir, ignore_errors=True)
        result = run_script.cmd(
            ["bash", APP_DIR / "build.sh", "ORT_CPU"], env={"BUILD_DIR": str(build_dir), "JOBS": "2"}, timeout=600
        )
        assert result.returncode == 0, f"ORT_CPU build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        assert binary.exists()
        stamp.write_text("ok\n")
        # keep the cache small: the 4 most recent other builds stay (other checkouts / source versions)
        others = sorted((p for p in build_dir.parent.glob("ort_cpu-*") if p != build_dir),
                        key=lambda p: p.stat().st_mtime, reverse=True)
        for old in others[4:]:
            shutil.rmtree(old, ignore_errors=True)
    return build_dir, binary


# ------------------------------------------------------------------------------------------------ images
def _photos():
    """A few real RGB/gray photos as uint8 arrays (scikit-image's CC0 images; PIL drawings without it)."""
    try:
        import skimage.data as sd
        return {"chelsea": sd.chelsea(), "coffee": sd.coffee(), "astronaut": sd.astronaut(),
                "rocket": sd.rocket(), "camera": sd.camera(), "logo": sd.logo(), "coins": sd.coins(),
                "colorwheel": sd.colorwheel()}
    except ImportError:
        from PIL import Image, ImageDraw
        out = {}
        rng = np.random.default_rng(0)
        for i in range(8):
            im = Image.new("RGB", (160 + 37 * i, 120 + 23 * i), tuple(int(v) for v in rng.integers(0, 255, 3)))
            draw = ImageDraw.Draw(im)
            for _ in range(12):
                box = sorted(rng.integers(0, im.width, 2)) + sorted(rng.integers(0, im.height, 2))
                draw.ellipse([box[0], box[2], box[1], box[3]], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
            out[f"drawing{i}"] = np.asarray(im)
        return out


def _write_images(folder: Path):
    """Encodes the photos as 8 image files (JPEG and PNG, odd sizes, gray, RGBA, EXIF-rotated, dotted
    names) directly in `folder`; returns their names."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    photos = list(_photos().items())
    specs = [("ILSVRC2012_val_00000001.JPEG", (301, 227), 90), ("ILSVRC2012_val_00000002.JPEG", None, 85),
             ("astronaut.v2.jpg", (131, 97), 92), ("rocket_exif.jpg", None, 90), ("camera_gray.jpg", (200, 180), 90),
             ("logo_rgba.png", (120, 150), None), ("coins.png", None, None), ("colorwheel.jpeg", (77, 64), 75)]
    names = []
    for (name, size, quality), (_, array) in zip(specs, photos):
        im = Image.fromarray(array)
        if size is not None:
            im = im.resize(size, Image.BILINEAR)
        kwargs = {}
        if name.startswith("rocket_exif"):
            exif = im.getexif()
            exif[0x0112] = 6  # "rotate 90 CW": MindSpore's Decode ignores it, so must the app
            kwargs["exif"] = exif
        if quality is not None:
            im.convert("RGB" if im.mode not in ("L", "RGB") else im.mode).save(folder / name, quality=quality,
                                                                               **kwargs)
        else:
            im.save(folder / name)
        names.append(name)
    return sorted(names)


@pytest.fixture(scope="session")
def image_set(tmp_path_factory):
    """(folder with the images in two class folders plus one stray text file, {name: path})."""
    root = tmp_path_factory.mktemp("cpp_images")
    staging = root / "flat"
    names = _write_images(staging)
    data = root / "data"
    paths = {}
    for i, name in enumerate(names):
        target = data / ("class_a" if i % 2 else "class_b") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(staging / name, target)
        paths[name] = target
    (data / "README.txt").write_text("not an image: the app must skip it\n")
    return data, paths


# ------------------------------------------------------------------------------------------------ reference
def eval_preprocess(path, resize=RESIZE, crop=CROP):
    """The Python eval path: MindSpore's Decode -> Resize((resize, resize)) -> CenterCrop(crop) -> Normalize
    -> HWC2CHW, as the zoo's eval transforms (src.data.transforms.eval_transforms when present). Float32 CHW."""
    try:   # the project's own eval transforms (src/dataset.py), squash mode with resize = crop / crop_pct
        from src.data.transforms import eval_transforms
        ops = eval_transforms(crop, eval_resize="squash", crop_pct=crop / resize)
    except ImportError:
        import mindspore.dataset.vision as vision
        ops = [vision.Decode(), vision.Resize((resize, resize)), vision.CenterCrop(crop), vision.Normalize(MEAN, STD),
               vision.HWC2CHW()]
    x = np.fromfile(str(path), dtype=np.uint8)
    for op in ops:
        x = op(x)
    x = np.asarray(x, dtype=np.float32)
    assert x.shape == (3, crop, crop), x.shape
    return x


def _ort_reference(model_path):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(chw):
        return session.run(None, {name: chw[None]})[0]
    return run


@dataclass
class Reference:
    kind: str
    run: Callable[[np.ndarray], np.ndarray]   # float32 CHW -> logits [1, NUM_CLASSES]
    atol: float = 1e-3                        # fp32 logits: max |C++ - reference|; fp16: added to one fp16 step


@dataclass
class OnnxCase:
    name: str
    path: Path
    dtype: np.dtype                           # dtype of the logits the app must write
    references: List[Reference]               # the first one also defines the flow test's expected accuracy

    def reference(self, chw):
        return self.references[0].run(chw)


def _make_test_onnx(path, fp16_head, seed=0):
    """A small conv net (conv, Mish as Softplus/Tanh/Mul, conv, ReLU, global pool, fc) built with onnx.helper.
    fp16_head casts the pooled features to float16 and runs the fc in float16, as the zoo's head."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    head = np.float16 if fp16_head else np.float32
    weights = {
        "w1": rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32), "b1": rng.normal(0, 0.1, 8).astype(np.float32),
        "w2": rng.normal(0, 0.2, (16, 8, 3, 3)).astype(np.float32), "b2": rng.normal(0, 0.1, 16).astype(np.float32),
        "wf": rng.normal(0, 0.5, (NUM_CLASSES, 16)).astype(head), "bf": rng.normal(0, 0.1, NUM_CLASSES).astype(head)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Softplus", ["c1"], ["sp"]), helper.make_node("Tanh", ["sp"], ["th"]),
             helper.make_node("Mul", ["c1", "th"], ["m1"]),
             helper.make_node("Conv", ["m1", "w2", "b2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]), helper.make_node("GlobalAveragePool", ["r2"], ["gp"]),
             helper.make_node("Flatten", ["gp"], ["feat"])]
    feat = "feat"
    if fp16_head:
        nodes.append(helper.make_node("Cast", ["feat"], ["feat16"], to=TensorProto.FLOAT16))
        feat = "feat16"
    nodes.append(helper.make_node("Gemm", [feat, "wf", "bf"], ["logits"], transB=1))
    graph = helper.make_graph(
        nodes, "tiny_classifier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, CROP, CROP])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT16 if fp16_head else TensorProto.FLOAT,
                                       [1, NUM_CLASSES])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="test_cpp_infer")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


class _exact_tanh_mish:
    """Context manager: the project's Mish computes tanh(softplus(x)) from Exp instead of MindSpore's Tanh
    kernel, to tell that kernel's approximation apart from differences in the C++ app."""

    @staticmethod
    def available():
        try:
            from src.utils.custom_op import Mish
        except ImportError:
            return False
        return hasattr(Mish, "construct")

    def __enter__(self):
        from mindspore import ops
        from src.utils.custom_op import Mish
        self._saved = Mish.construct

        def construct(cell, x):
            e = ops.exp(-2.0 * ops.softplus(x))   # softplus >= 0, so e is in (0, 1]
            return x * (1.0 - e) / (1.0 + e)
        Mish.construct = construct
        return self

    def __exit__(self, *exc):
        from src.utils.custom_op import Mish
        Mish.construct = self._saved
        return False


def _project_model_cases(run_script, folder: Path, calibration, calibrate) -> List[OnnxCase]:
    """The project's own network (tiny CSPDarkNet53 variant, random BN-calibrated weights, see the calibrate
    fixture in tests/conftest.py) with a float32 and a float16 head, saved as checkpoints and exported to ONNX by
    export.py (both exports run side by side), or by mindspore.onnx.export where export.py does not exist.
    Reference: MindSpore's own eval logits for the same weights."""
    import mindspore as ms
    from src.image_classification import create_model
    nets, exports = {}, {}
    for fp16_head in (False, True):
        tag = "fp16" if fp16_head else "fp32"
        net = create_model("cspdarknet_tiny", num_classes=NUM_CLASSES, fp16_head=fp16_head, seed=3)
        calibrate(net, 3, np.stack(calibration))
        nets[tag] = (net, folder / f"cspdarknet_tiny_{tag}.onnx", fp16_head)
        if (ROOT / "export.py").exists():
            ckpt = folder / f"cspdarknet_tiny_{tag}.ckpt"
            ms.save_checkpoint(net, str(ckpt))
            args = ["--arch=cspdarknet_tiny", "--file_format=ONNX", f"--ckpt_file={ckpt}", f"--width={CROP}",
                    f"--height={CROP}", f"--num_classes={NUM_CLASSES}",
                    f"--file_name={folder / f'cspdarknet_tiny_{tag}'}", f"--fp16_head={int(fp16_head)}"]
            exports[tag] = run_script.popen("export.py", args, cwd=folder, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True)
        else:
            ms.onnx.export(net, ms.Tensor(np.zeros((1, 3, CROP, CROP), np.float32)),
                           file_name=str(nets[tag][1]))
    for tag, proc in exports.items():
        stdout, stderr = proc.communicate(timeout=600)
        # export.py exits 1 when its own reload check (1e-4 of the largest logit) fails after writing the
        # file. MindSpore's approximate CPU Tanh alone can exceed that (see below); the logits are compared
        # here with tolerances that account for it, so only that exit is let through.
        own_check_only = proc.returncode == 1 and "verify: FAILED, the exported model does not" in stdout
        assert proc.returncode == 0 or own_check_only, f"export.py failed:\n{stdout[-2000:]}\n{stderr[-2000:]}"
        if own_check_only:
            print(f"\nnote: export.py's reload check failed for {tag}: " + stdout.strip().splitlines()[-2])

    cases = []
    for tag, (net, onnx_path, fp16_head) in nets.items():
        assert onnx_path.exists(), f"no {onnx_path} after the export"

        def ms_eval(chw, net=net):
            return net(ms.Tensor(chw[None])).asnumpy()

        def ms_exact_tanh(chw, net=net):
            with _exact_tanh_mish():
                return net(ms.Tensor(chw[None])).asnumpy()
        # MindSpore 2.10's CPU Tanh kernel is an approximation (max abs error 1.0e-4 against float64 on
        # [-30, 30]; ONNX Runtime's is 5e-7). Through the Mish layers that moves the logits by up to ~2e-3,
        # hence 5e-3 against MindSpore's own eval; with an accurate tanh the gap is ~2e-5, and 1e-3 holds.
        refs = [Reference("MindSpore eval logits", ms_eval, atol=5e-3)]
        if _exact_tanh_mish.available():
            refs.append(Reference("MindSpore, Mish with an accurate tanh", ms_exact_tanh, atol=1e-3))
        cases.append(OnnxCase(f"cspdarknet_tiny_{tag}", onnx_path, np.dtype(np.float16 if fp16_head else np.float32),
                              refs))
    return cases


@pytest.fixture(scope="session")
def exported_onnx(tmp_path_factory, image_set, calibrate, run_script) -> Dict[str, OnnxCase]:
    """HOOK: the ONNX models the app is checked on, each with the reference its logits must match.

    * onnx_fp32 / onnx_fp16: small nets built with onnx.helper, reference = onnxruntime from Python on the
      same eval-preprocessed input (checks the app's preprocessing + ORT plumbing + output dtype).
    * cspdarknet_tiny_fp32 / _fp16: the project's network (src/image_classification.create_model), exported
      through export.py (or mindspore.onnx.export while export.py does not exist), reference = MindSpore's own
      eval logits for the same weights. Lead: once export.py is final, check the flags used in
      _project_model_cases; to test a real checkpoint, save/point `ckpt` there.
    """
    folder = tmp_path_factory.mktemp("cpp_models")
    cases = {}
    for fp16_head in (False, True):
        tag = "fp16" if fp16_head else "fp32"
        path = folder / f"onnx_{tag}.onnx"
        _make_test_onnx(path, fp16_head)
        cases[f"onnx_{tag}"] = OnnxCase(f"onnx_{tag}", path, np.dtype(np.float16 if fp16_head else np.float32),
                                        [Reference("onnxruntime (Python)", _ort_reference(path))])
    if (ROOT / "src" / "image_classification.py").exists():
        calibration = [eval_preprocess(p) for p in image_set[1].values()]
        for case in _project_model_cases(run_script, folder, calibration, calibrate):
            cases[case.name] = case
    return cases


def _case_names():
    names = ["onnx_fp32", "onnx_fp16"]
    if (ROOT / "src" / "image_classification.py").exists():
        names += ["cspdarknet_tiny_fp32", "cspdarknet_tiny_fp16"]
    return names


def _fp16_step(expected):
    """One float16 step (ulp) at the largest |logit|: the unit of an fp16 head's rounding differences."""
    return float(np.spacing(np.float16(np.abs(expected.astype(np.float32)).max())))


def _fp16_close(actual, expected, extra=0.0):
    """|a - e| within one float16 step at the largest logit (+ `extra`, for a reference with known error)."""
    diff = np.abs(actual.astype(np.float32) - expected.astype(np.float32))
    return diff <= _fp16_step(expected) + extra


def _same_top1(actual, expected, tol):
    """Same arg-max, unless the reference's best two are within `tol` (a tie at this precision)."""
    order = np.argsort(-expected.astype(np.float32))
    if int(np.argmax(actual)) == int(order[0]):
        return True
    top = expected.astype(np.float32)[order[:2]]
    return (top[0] - top[1]) <= tol and int(np.argmax(actual)) == int(order[1])


def _run_app(run_script, binary, model, data, out_dir, *extra):
    out_dir.mkdir(parents=True, exist_ok=True)
    return run_script.cmd(
        [
            binary,
            f"--model_path={model}",
            f"--dataset_path={data}",
            f"--result_path={out_dir / 'result_Files'}",
            f"--resize={RESIZE}",
            f"--crop={CROP}",
            "--threads=1",
            *extra,
        ],
        cwd=out_dir,
    )


def _stem(name):
    return name.rsplit(".", 1)[0]


# ------------------------------------------------------------------------------------------------ tests
def test_build_and_help(app_build, run_script):
    _, binary = app_build
    result = run_script.cmd([binary, "--help"])
    assert result.returncode == 0
    for flag in ("--model_path", "--mindir_path", "--dataset_path", "--device_id", "--result_path", "--threads",
                 "--resize", "--crop"):
        assert flag in result.stdout


@pytest.mark.parametrize("resize,crop", [(RESIZE, CROP), (61, CROP)])
def test_preprocessing_matches_mindspore_eval(app_build, exported_onnx, image_set, tmp_path, resize, crop, run_script):
    """The tensor the app feeds equals MindSpore's eval transforms bit for bit (odd crop offset included)."""
    _, binary = app_build
    data, paths = image_set
    result = run_script.cmd([binary, f"--model_path={exported_onnx['onnx_fp32'].path}", f"--dataset_path={data}",
                   f"--result_path={tmp_path / 'res'}", f"--dump_input_path={tmp_path / 'inputs'}",
                   f"--resize={resize}", f"--crop={crop}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name, path in paths.items():
        dumped = np.fromfile(tmp_path / "inputs" / f"{_stem(name)}_input.bin", dtype=np.float32)
        expected = eval_preprocess(path, resize, crop)
        assert dumped.shape == (expected.size,), name
        np.testing.assert_array_equal(dumped.reshape(expected.shape), expected, err_msg=name)


@pytest.mark.parametrize("case_name", _case_names())
def test_logits_match_reference(app_build, exported_onnx, image_set, tmp_path, case_name, run_script):
    _, binary = app_build
    case = exported_onnx[case_name]
    data, paths = image_set
    result = _run_app(run_script, binary, case.path, data, tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    itemsize = case.dtype.itemsize
    assert f"output 0: {case.dtype.name} [1,{NUM_CLASSES}], {NUM_CLASSES * itemsize} bytes per image" in result.stdout
    files = sorted(p.name for p in (tmp_path / "result_Files").iterdir())
    assert files == sorted(f"{_stem(n)}_0.bin" for n in paths)   # last extension replaced: astronaut.v2_0.bin
    report = []
    for ref in case.references:
        worst = 0.0
        for name, path in paths.items():
            logits = np.frombuffer((tmp_path / "result_Files" / f"{_stem(name)}_0.bin").read_bytes(), dtype=case.dtype)
            assert logits.size == NUM_CLASSES, name
            expected = np.asarray(ref.run(eval_preprocess(path))).reshape(-1)
            assert expected.dtype == case.dtype, f"{ref.kind} gives {expected.dtype} for {case_name}"
            diff = np.abs(logits.astype(np.float32) - expected.astype(np.float32))
            worst = max(worst, float(diff.max()))
            if case.dtype == np.float16:
                close = _fp16_close(logits, expected, ref.atol if ref.atol > 1e-3 else 0.0)
                assert close.all(), f"{name}: {int((~close).sum())} logits differ from {ref.kind} by more than " \
                                    f"one fp16 step (max {diff.max():.3g})"
                tol = _fp16_step(expected) + ref.atol
            else:
                assert diff.max() <= ref.atol, f"{name}: max |diff| {diff.max():.3g} vs {ref.kind} (atol {ref.atol})"
                tol = ref.atol
            assert _same_top1(logits, expected, tol), f"{name}: top-1 {np.argmax(logits)} vs {np.argmax(expected)}"
        report.append(f"{ref.kind}: max |diff| {worst:.3g}")
    print(f"\n{case_name} ({case.dtype.name}, {len(paths)} images): " + "; ".join(report))


def test_timing_output(app_build, exported_onnx, image_set, tmp_path, run_script):
    _, binary = app_build
    data, paths = image_set
    result = _run_app(run_script, binary, exported_onnx["onnx_fp16"].path, data, tmp_path)
    assert result.returncode == 0, result.stderr
    pattern = rf"NN inference cost average time: [0-9.e+-]+ ms of infer_count {len(paths)}"
    assert re.search(pattern, result.stdout)
    timing = (tmp_path / "time_Result" / "test_perform_static.txt").read_text()
    assert re.fullmatch(pattern + r"\n", timing)
    assert "1 other files ignored" in result.stdout      # README.txt


def test_errors_are_clear(app_build, exported_onnx, image_set, tmp_path, run_script):
    _, binary = app_build
    data, _ = image_set
    model = exported_onnx["onnx_fp32"].path

    def check(args, needle, code=1):
        result = run_script.cmd([binary, *args], cwd=tmp_path)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert needle in result.stderr, (args, result.stderr)

    check([f"--model_path={tmp_path / 'missing.onnx'}", f"--dataset_path={data}"], "Invalid model")
    # an override that does not fit the model names the flag and run_infer_310.sh's variable
    check([f"--model_path={model}", f"--dataset_path={data}", "--crop=64"], "CROP=56")
    check([f"--model_path={model}", "--bogus=1"], "unknown flag --bogus", code=2)
    check([f"--model_path={model}", "--crop=abc"], "needs an integer", code=2)
    check([f"--model_path={model}", "--resize=32", "--crop=56"], "0 < --crop <= --resize", code=2)
    check([f"--dataset_path={data}"], "--model_path (or --mindir_path) is required", code=2)
    empty = tmp_path / "empty"
    empty.mkdir()
    check([f"--model_path={model}", f"--dataset_path={empty}", f"--crop={CROP}", f"--resize={RESIZE}"],
          "no input images")
    mindir = tmp_path / "net.mindir"
    mindir.write_bytes(b"x")
    check([f"--model_path={mindir}", f"--dataset_path={data}"], "needs the ASCEND310 build")
    bad = tmp_path / "bad" / "cls"
    bad.mkdir(parents=True)
    (bad / "broken.jpg").write_bytes(b"not a jpeg")
    check([f"--model_path={model}", f"--dataset_path={bad.parent}", f"--crop={CROP}", f"--resize={RESIZE}"],
          "cannot decode image")
    dup = tmp_path / "dup"
    for cls in ("a", "b"):
        (dup / cls).mkdir(parents=True)
        shutil.copy(next(data.glob("*/*.JPEG")), dup / cls / "same.JPEG")
    check([f"--model_path={model}", f"--dataset_path={dup}", f"--crop={CROP}", f"--resize={RESIZE}"],
          "would both write same_0.bin")
    # --mindir_path is the zoo's alias of --model_path
    result = run_script.cmd([binary, f"--mindir_path={model}", f"--dataset_path={data}", f"--crop={CROP}",
                             f"--resize={RESIZE}", f"--result_path={tmp_path / 'alias'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def _flow_dataset(folder: Path, case: OnnxCase, paths):
    """ImageNet-style val folder with NUM_CLASSES class folders; each image goes to a class chosen from
    its reference ranking (rank 0, 2 or 9), so the expected top-1/top-5 accuracy is known."""
    for c in range(NUM_CLASSES):
        (folder / f"c{c:04d}").mkdir(parents=True, exist_ok=True)
    top1 = top5 = 0
    for i, (name, path) in enumerate(sorted(paths.items())):
        ranking = np.argsort(-np.asarray(case.reference(eval_preprocess(path))).reshape(-1).astype(np.float32),
                             kind="stable")
        rank = (0, 2, 9)[i % 3]
        shutil.copy(path, folder / f"c{int(ranking[rank]):04d}" / name)
        top1 += rank == 0
        top5 += rank < 5
    return top1 / len(paths), top5 / len(paths)


@pytest.mark.parametrize("case_name", ["onnx_fp32", _case_names()[-1]])
def test_run_infer_310_flow(app_build, exported_onnx, image_set, tmp_path, case_name, run_script):
    """scripts/run_infer_310.sh MODEL DATA from an unrelated CWD: build, infer, label file, acc.log."""
    build_dir, _ = app_build
    case = exported_onnx[case_name]
    _, paths = image_set
    val = tmp_path / "val"
    top1, top5 = _flow_dataset(val, case, paths)
    work = tmp_path / "work"
    work.mkdir()
    result = run_script.cmd(["bash", ROOT / "scripts" / "run_infer_310.sh", case.path, val, "0"], cwd=work,
                  env={"PYTHON": sys.executable, "RESIZE": str(RESIZE), "CROP": str(CROP), "THREADS": "1",
                       "BUILD_DIR": str(build_dir)}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for produced in ("build.log", "infer.log", "imagenet_label.json", "acc.log", "time_Result/test_perform_static.txt"):
        assert (work / produced).exists(), produced
    assert len(list((work / "result_Files").glob("*_0.bin"))) == len(paths)
    acc = (work / "acc.log").read_text()
    match = re.search(r"Total data: (\d+), top1 accuracy: ([0-9.]+), top5 accuracy: ([0-9.]+)", acc)
    assert match, acc
    assert int(match.group(1)) == len(paths)
    assert float(match.group(2)) == pytest.approx(top1)
    assert float(match.group(3)) == pytest.approx(top5)


def test_run_infer_310_usage_and_engine_errors(tmp_path, run_script):
    script = ROOT / "scripts" / "run_infer_310.sh"
    result = run_script.cmd(["bash", script], cwd=tmp_path)
    assert result.returncode == 2 and "Usage:" in result.stderr
    model = tmp_path / "net.pb"
    model.write_bytes(b"x")
    result = run_script.cmd(["bash", script, model, tmp_path], cwd=tmp_path)
    assert result.returncode == 2 and "use a .mindir (Ascend 310) or .onnx (CPU) file" in result.stderr
    # a missing library gives one message that says what to install
    onnx_model = tmp_path / "net.onnx"
    onnx_model.write_bytes(b"x")
    result = run_script.cmd(["bash", script, onnx_model, tmp_path], cwd=tmp_path,
                  env={"ORT_ROOT": str(tmp_path / "no_ort"), "BUILD_DIR": str(tmp_path / "build"),
                       "PYTHON": sys.executable})
    assert result.returncode == 1
    assert "ONNX Runtime headers/library not found" in result.stderr and "install_cxx_deps.sh" in result.stderr


def test_ascend310_build_without_cxx_api_says_what_to_install(tmp_path, run_script):
    """build.sh ASCEND310 against a MindSpore without include/api (the PyPI CPU wheel) stops with one message."""
    fake = tmp_path / "mindspore"
    (fake / "include").mkdir(parents=True)
    result = run_script.cmd(["bash", APP_DIR / "build.sh", "ASCEND310"],
                  env={"MINDSPORE_PATH": str(fake), "BUILD_DIR": str(tmp_path / "build")})
    assert result.returncode == 1
    assert "no MindSpore C++ inference API" in result.stderr and "Ascend package" in result.stderr


def test_ascend310_sources_compile_against_mindspore_api(run_script):
    """The ASCEND310 engine cannot rot unseen: -fsyntax-only -Werror against the MindSpore C++ API headers, and
    its old-ABI objects link against this OpenCV (the zoo's cv::imread-style ABI trap)."""
    if not (MS_API_ROOT / "include" / "api" / "model.h").exists():
        message = f"MindSpore C++ API headers not found under {MS_API_ROOT}. " + INSTALL_HINT
        if os.environ.get("SKIP_CXX_INFER") == "1":
            pytest.skip(message)
        pytest.fail(message)
    result = run_script.cmd(["bash", APP_DIR / "check_ascend_syntax.sh", "--link-check", MS_API_ROOT])
    assert result.returncode == 0, result.stdout + result.stderr
    for src in ("src/main.cc", "src/utils.cc", "src/engine_ascend310.cc"):
        assert f"ok: {src}" in result.stdout
    # linked with OpenCV but no MindSpore library, only mindspore:: symbols may stay unresolved
    assert "link check: only MindSpore symbols unresolved" in result.stdout


# ------------------------------------------------------------------------------------------------ model record
RECORD_RESIZE_MODE, RECORD_CROP_PCT = "shorter", 0.8      # shorter side to floor(56 / 0.8) = 70, then crop 56
RECORD_NAMES = [f"thing{i:04d}" for i in range(NUM_CLASSES)]


def _record_for_case(case):
    """A model record for an exported project model: its checkpoint, with class names and a shorter-side eval
    resize as a training run would have recorded them."""
    from src.checkpoint import checkpoint_model_info
    from src.deploy.record import build_model_record

    ckpt = case.path.with_suffix(".ckpt")
    if not ckpt.exists():
        pytest.skip("needs export.py's checkpoint of the case")
    info = checkpoint_model_info(str(ckpt))
    info = dict(info, class_names=RECORD_NAMES, class_names_source="test",
                preprocess={"eval_resize": RECORD_RESIZE_MODE, "crop_pct": RECORD_CROP_PCT})
    return build_model_record(str(ckpt), "cspdarknet_tiny", NUM_CLASSES, [1, 3, CROP, CROP], info=info,
                              file_format="ONNX")


@pytest.fixture(scope="session")
def recorded_models(exported_onnx, image_set, tmp_path_factory):
    """{"embedded": ONNX with the record in its metadata, "sidecar": the same ONNX with the record beside it,
    "int8": its INT8 QDQ model from src.deploy.quantize (calibrated on the image set)} and the record."""
    from src.deploy.quantize import calibration_batches, quantize_onnx
    from src.deploy.record import write_model_record

    if "cspdarknet_tiny_fp32" not in exported_onnx:
        pytest.skip("needs the project's network")
    case = exported_onnx["cspdarknet_tiny_fp32"]
    record = _record_for_case(case)
    folder = tmp_path_factory.mktemp("recorded")
    embedded, side = folder / "embedded.onnx", folder / "sidecar" / "model.onnx"
    side.parent.mkdir()
    shutil.copy(case.path, embedded)
    import onnx
    bare = onnx.load(str(case.path))   # export.py embeds a record of its own: the sidecar case has none inside
    del bare.metadata_props[:]
    onnx.save(bare, str(side))
    write_model_record(embedded, record)
    (folder / "sidecar" / "model.onnx.json").write_text(json.dumps(record))
    data, _ = image_set
    batches = calibration_batches(str(data), record, num_images=8, batch_size=1, seed=0)
    int8 = folder / "embedded.int8.onnx"
    quantize_onnx(embedded, int8, batches)
    return {"embedded": embedded, "sidecar": side, "int8": int8}, record


def _record_preprocess(path):
    from src.data.transforms import eval_transforms
    ops = eval_transforms(CROP, eval_resize=RECORD_RESIZE_MODE, crop_pct=RECORD_CROP_PCT)
    x = np.fromfile(str(path), dtype=np.uint8)
    for op in ops:
        x = op(x)
    return np.asarray(x, dtype=np.float32)


@pytest.mark.parametrize("kind", ["embedded", "sidecar", "int8"])
def test_app_uses_the_model_record_with_no_size_flags(
    app_build, recorded_models, image_set, tmp_path, kind, run_script
):
    """No --resize/--crop: the input is the record's preprocessing (a shorter-side resize, which the old app could
    not do), bit for bit; each image's top-1 is printed with its class name; the logits match onnxruntime."""
    _, binary = app_build
    models, _ = recorded_models
    data, paths = image_set
    model = models[kind]
    result = run_script.cmd(
        [
            binary,
            f"--model_path={model}",
            f"--dataset_path={data}",
            f"--result_path={tmp_path / 'res'}",
            f"--dump_input_path={tmp_path / 'inputs'}",
            "--threads=1",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "preprocessing: shorter side to 70, centre crop 56x56, from the model record" in result.stdout
    reference = _ort_reference(model)
    tops = re.findall(r"^  top-1: (\d+) (\S+) \(p=([0-9.]+)\)$", result.stdout, flags=re.M)
    assert len(tops) == len(paths), result.stdout[-2000:]
    for (index, name, p), (image, path) in zip(tops, sorted(paths.items(), key=lambda kv: str(kv[1]))):
        expected_input = _record_preprocess(path)
        dumped = np.fromfile(tmp_path / "inputs" / f"{_stem(image)}_input.bin", dtype=np.float32)
        np.testing.assert_array_equal(dumped.reshape(expected_input.shape), expected_input, err_msg=image)
        expected = reference(expected_input).reshape(-1)
        logits = np.fromfile(tmp_path / "res" / f"{_stem(image)}_0.bin", dtype=np.float32)
        np.testing.assert_allclose(logits, expected, atol=1e-3 * max(1.0, float(np.abs(expected).max())))
        assert int(index) == int(np.argmax(logits)) and name == RECORD_NAMES[int(index)]
        probs = np.exp(expected - expected.max())
        assert float(p) == pytest.approx(float(probs.max() / probs.sum()), abs=2e-4)


def test_app_refuses_a_size_that_does_not_fit_naming_the_real_option(app_build, recorded_models, image_set,
                                                                     tmp_path, run_script):
    from src.deploy.record import write_model_record

    _, binary = app_build
    models, record = recorded_models
    data, _ = image_set
    result = run_script.cmd([binary, f"--model_path={models['embedded']}", f"--dataset_path={data}", "--crop=64",
                   f"--result_path={tmp_path / 'r'}"], cwd=tmp_path)
    assert result.returncode == 1
    assert "--crop=64" in result.stderr and "CROP=64" in result.stderr and "unset CROP" in result.stderr
    # a record that belongs to another export (says 64 px on a 56-px model) is named as such
    other = tmp_path / "other.onnx"
    shutil.copy(models["embedded"], other)
    wrong = json.loads(json.dumps(record))
    wrong["input"]["shape"] = [1, 3, 64, 64]
    wrong["preprocess"].update(image_size=[64, 64], resize=[80])
    write_model_record(other, wrong)
    result = run_script.cmd(
        [binary, f"--model_path={other}", f"--dataset_path={data}", f"--result_path={tmp_path / 'r'}"], cwd=tmp_path
    )
    assert result.returncode == 1 and "another export" in result.stderr and "CROP=56" in result.stderr
    # through run_infer_310.sh: its variables are what the message names, never a flag the script lacks
    result = run_script.cmd(["bash", ROOT / "scripts" / "run_infer_310.sh", models["embedded"], data], cwd=tmp_path,
                  env={"PYTHON": sys.executable, "CROP": "64", "RESIZE": "72", "BUILD_DIR": str(app_build[0])})
    assert result.returncode == 1 and "CROP=64" in result.stderr


def test_run_infer_310_flow_with_a_recorded_model_and_a_manifest(
    app_build, recorded_models, image_set, tmp_path, run_script
):
    """No RESIZE/CROP: the record decides; a data folder that holds the data check's manifest raises no
    warning; acc.log has per-class lines with the record's names and the label file uses them."""
    build_dir, _ = app_build
    models, _ = recorded_models
    _, paths = image_set
    val = tmp_path / "val"
    reference = _ort_reference(models["embedded"])
    hits = 0
    for i, (name, path) in enumerate(sorted(paths.items())):
        ranking = np.argsort(-reference(_record_preprocess(path)).reshape(-1), kind="stable")
        cls = int(ranking[0 if i % 2 else 3])
        hits += i % 2
        (val / RECORD_NAMES[cls]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, val / RECORD_NAMES[cls] / name)
    (val / ".cspdarknet53_verified.jsonl").write_text('{"format": "cspdarknet53-verify-manifest"}\n')
    work = tmp_path / "work"
    work.mkdir()
    result = run_script.cmd(["bash", ROOT / "scripts" / "run_infer_310.sh", models["embedded"], val], cwd=work,
                  env={"PYTHON": sys.executable, "THREADS": "1", "BUILD_DIR": str(build_dir)}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "WARNING" not in result.stdout + result.stderr and "verified.jsonl" not in result.stdout + result.stderr
    acc = (work / "acc.log").read_text()
    match = re.search(r"Total data: (\d+), top1 accuracy: ([0-9.]+)", acc)
    assert match and int(match.group(1)) == len(paths)
    assert float(match.group(2)) == pytest.approx(hits / len(paths))
    assert re.search(r"^class \d+ thing\d{4}: \d+ images, top1 ", acc, flags=re.M), acc
