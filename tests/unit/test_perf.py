"""src/utils/perf.py, the performance settings benchmark.py, train and eval share, and benchmark.py's run specs
(in process; benchmark.py itself runs in tests/reference/test_benchmark.py)."""
import os

import pytest
from mindspore import Tensor, nn  # at import, so that tests/conftest.py sets CPU/PYNATIVE before any kernel runs


def test_recommended_and_split_settings():
    from src.utils import perf

    train, infer = perf.recommended_settings("train"), perf.recommended_settings("infer")
    assert train["onednn_isa"] == infer["onednn_isa"] == "auto"
    assert train.get("recompute_act") and not train.get("fold_bn")
    assert infer.get("fold_bn") and not infer.get("recompute_act")
    with pytest.raises(ValueError, match="unknown performance settings"):  # MindSpore's Mish kernel: NaN > 44
        perf.split_settings({"fused_mish": "nn"})
    process, network = perf.split_settings(dict(infer, jit_level="O0"))
    assert process == {"onednn_isa": "auto", "jit_level": "O0"} and network == {"fold_bn": True, "fused_act": "mish"}
    with pytest.raises(ValueError, match="unknown performance settings"):
        perf.split_settings({"fold_bn": True, "no_such_knob": 1})
    with pytest.raises(ValueError):
        perf.recommended_settings("eval")


def test_onednn_isa_auto_caps_only_avx512(monkeypatch):
    from src.utils import perf

    monkeypatch.setattr(perf.host, "cpu_flags", lambda: {"avx2", "fma", "avx512f"})
    assert perf._resolve_onednn_isa("auto") == "AVX2"
    monkeypatch.setattr(perf.host, "cpu_flags", lambda: {"avx2", "fma"})
    assert perf._resolve_onednn_isa("auto") is None
    assert perf._resolve_onednn_isa(None) is None
    assert perf._resolve_onednn_isa("avx512_core") == "AVX512_CORE"


def test_cap_onednn_isa_sets_the_cap_unless_the_environment_names_one(monkeypatch):
    from src.utils import perf

    monkeypatch.setattr(perf.host, "cpu_flags", lambda: {"avx2", "fma", "avx512f"})
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    assert perf.cap_onednn_isa("auto") == "AVX2" and os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert perf.cap_onednn_isa("auto") is None  # already set: left as it is
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "SSE41")  # the older name wins too
    assert perf.cap_onednn_isa("auto") is None and "ONEDNN_MAX_CPU_ISA" not in os.environ
    monkeypatch.delenv("DNNL_MAX_CPU_ISA")
    monkeypatch.setattr(perf.host, "cpu_flags", lambda: {"avx2", "fma"})
    assert perf.cap_onednn_isa("auto") is None and "ONEDNN_MAX_CPU_ISA" not in os.environ  # nothing to cap


def _tiny_net_with_bn_stats():
    import numpy as np

    from src.image_classification import create_model

    rng = np.random.default_rng(1)
    net = create_model("cspdarknet_tiny", num_classes=10)
    for p in net.get_parameters():
        if p.name.endswith(("moving_mean", "beta")):
            p.set_data(Tensor(rng.normal(0, 0.1, p.shape).astype(np.float32)))
        elif p.name.endswith(("moving_variance", "gamma")):
            p.set_data(Tensor(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
    net.set_train(False)
    return net


def test_fold_batchnorm_keeps_the_logits():
    import numpy as np

    from src.utils.perf import prepare_network

    x = Tensor(np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32))
    reference = _tiny_net_with_bn_stats()(x).asnumpy()
    net = prepare_network(_tiny_net_with_bn_stats(), train=False, fold_bn=True)
    assert not any(isinstance(c, nn.BatchNorm2d) for _, c in net.cells_and_names())
    names = [p.name for p in net.get_parameters()]
    assert len(names) == len(set(names))
    np.testing.assert_allclose(net(x).asnumpy(), reference, rtol=1e-5, atol=1e-6)


def test_prepare_network_train_options():
    from src.image_classification import create_model
    from src.utils.perf import prepare_network

    net = prepare_network(create_model("cspdarknet_tiny", num_classes=10), train=True, fold_bn=True,
                          recompute_act=True)
    # fold_bn is ignored for training; every Mish is marked for recompute
    assert sum(isinstance(c, nn.BatchNorm2d) for _, c in net.cells_and_names()) == 36
    from src.utils.custom_op import Mish
    mish = [c for _, c in net.cells_and_names() if isinstance(c, Mish)]
    assert len(mish) == 36
    assert all(getattr(c, "_has_config_recompute", False) for c in mish)  # set by Cell.recompute() (2.10)


def test_make_specs_same_threads_both_sides():
    import benchmark

    args = benchmark.build_parser().parse_args(["--compare", "timm", "--threads", "2", "--infer_batch_sizes", "1",
                                                "--train_batch_sizes", "8", "--arch", "cspdarknet53"])
    specs = benchmark.make_specs(args)
    assert [(s["framework"], s["mode"], s["batch_size"]) for s in specs] == [
        ("mindspore", "infer", 1), ("torch", "infer", 1), ("mindspore", "train", 8), ("torch", "train", 8)]
    assert {s["threads"] for s in specs} == {2}
    assert specs[0]["settings"]["fold_bn"] and specs[2]["settings"]["recompute_act"]
    before = benchmark.make_specs(benchmark.build_parser().parse_args(["--no_perf", "--infer_batch_sizes", "1",
                                                                       "--train_batch_sizes", ""]))
    assert before[0]["settings"] == {"onednn_isa": None} and before[0]["threads"] == 0


def test_recommended_settings_fuse_activations_but_export_does_not(monkeypatch):
    from src.utils import perf

    # the process settings are not the point here, and MindSpore refuses to set the thread count twice
    monkeypatch.setattr(perf, "apply_cpu_performance_settings", lambda **kwargs: dict(kwargs))

    assert perf.recommended_settings("train")["fused_act"] is True
    assert perf.recommended_settings("infer")["fused_act"] == "mish"
    _, rewrites = perf.apply_recommended_settings("CPU", "infer", network=False)  # what export.py asks for
    assert rewrites == {}
    assert perf.apply_recommended_settings("GPU", "train") == ({}, {})
    assert perf._fused_act_kind(True) == "all" and perf._fused_act_kind("mish") == "mish"
    assert perf._fused_act_kind(False) is None
    with pytest.raises(ValueError):
        perf._fused_act_kind("fast")


def test_annotate_pairs_and_flags():
    from benchmarks import runner

    base = dict(status="ok", img_size=224, num_classes=1000, precision="fp32", threads=2, compile_s=1.0,
                peak_rss_mb=1000.0)
    rows = [dict(base, framework="mindspore", arch="cspdarknet53_timm", model="cspdarknet53_timm", mode="infer",
                 batch_size=1, ms_per_step=100.0, cpu_ms_per_step=150.0, cpu_s_per_image=0.15, images_per_s=10.0,
                 load_avg_start=1.0, load_avg_end=1.5),
            dict(base, framework="torch", arch="cspdarknet53", pair_arch="cspdarknet53_timm", flops_arch="cspdarknet53_timm",
                 model="timm cspdarknet53", mode="infer", batch_size=1, ms_per_step=200.0, cpu_ms_per_step=400.0,
                 cpu_s_per_image=0.4, images_per_s=5.0, load_avg_start=2.6, load_avg_end=1.0)]
    # a quiet machine: the benchmark's own 2 threads put the load average at ~2; other processes used ~0 cores
    quiet = dict(rows[0], load_avg_start=2.05, load_avg_end=2.02, other_cores=0.03)
    busy = dict(rows[0], load_avg_start=1.2, load_avg_end=1.9, other_cores=0.6)  # a job started meanwhile
    runner.annotate([quiet, busy])
    assert not quiet["loaded"] and busy["loaded"]
    runner.annotate(rows, {"status": "ok", "gflops": 200.0, "gflops_per_cpu_s": 100.0})
    assert rows[0]["gflop_per_step"] == pytest.approx(10.01, abs=0.01)
    assert rows[0]["flop_limit_frac"] == pytest.approx(0.5, abs=0.01)        # 100 GFLOP/s of 200
    assert rows[0]["flop_limit_frac_cpu"] == pytest.approx(0.667, abs=0.01)   # 66.7 GFLOP per CPU-s of 100
    assert not rows[0]["loaded"] and rows[1]["loaded"]
    (q,) = runner.ratio_rows(rows)
    assert q["arch"] == "cspdarknet53_timm" and q["speed_ratio"] == pytest.approx(2.0) and q["loaded"]
    assert q["cpu_ratio"] == pytest.approx(0.4 / 0.15)
    table = runner.ratio_table([q])
    assert "| infer | 1 | 224x224 | cspdarknet53_timm |" in table and "yes (!)" in table
    assert "(!)" in runner.markdown_table(rows)


def test_default_specs_compare_each_arch_with_its_twin():
    import benchmark

    args = benchmark.build_parser().parse_args(["--compare", "timm", "--infer_batch_sizes", "1",
                                                "--train_batch_sizes", ""])
    specs = benchmark.make_specs(args)
    pairs = [(s["framework"], s.get("pair_arch", s["arch"]), s.get("timm_model"), dict(s.get("timm_kwargs") or []))
             for s in specs]
    assert pairs == [("mindspore", "cspdarknet53", None, {}),
                     ("torch", "cspdarknet53", "cspdarknet53", {"act_layer": "mish"}),
                     ("mindspore", "cspdarknet53_timm", None, {}),
                     ("torch", "cspdarknet53_timm", "cspdarknet53", {})]
    quick = benchmark.build_parser().parse_args(["--quick"])
    assert benchmark.arch_list(quick) == ["cspdarknet53"]
