"""export.py on timm's weights: the ONNX file of the timm variant gives timm's PyTorch logits."""
import numpy as np
import torch

from src.export_utils import run_onnx


def _x(shape, seed=0):
    return np.random.RandomState(seed).standard_normal(shape).astype(np.float32)


def test_timm_variant_onnx_matches_timm(tmp_path, run_script, timm_model):
    from safetensors.torch import save_file

    model = timm_model
    ckpt = tmp_path / "cspdarknet53_timm.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))

    # No --arch: the timm key layout selects cspdarknet53_timm.
    proc = run_script("export.py", [f"--ckpt_file={ckpt}", "--file_format=ONNX", "--height=64", "--width=64",
                                    "--file_name=timm64"], cwd=tmp_path)
    assert proc.returncode == 0, proc.output
    assert "cspdarknet53_timm with 1000 classes" in proc.output and "verify: OK" in proc.output
    x = _x((2, 3, 64, 64), seed=11)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = run_onnx(tmp_path / "timm64.onnx", np.ascontiguousarray(x[:1]))  # exported with batch 1
    got2 = run_onnx(tmp_path / "timm64.onnx", np.ascontiguousarray(x[1:]))
    got = np.concatenate([got, got2])
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())
    print(f"timm-variant ONNX vs timm: max abs diff {np.abs(got - ref).max():.3e}, relative {rel:.3e}")
    assert rel < 1e-4
    assert (got.argmax(1) == ref.argmax(1)).all()
