"""src/utils/perf.py, the performance settings benchmark.py, train and eval share, and benchmark.py's run specs
(in process; benchmark.py itself runs in tests/e2e/test_benchmark.py)."""
import pytest


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


def _tiny_net_with_bn_stats():
    import numpy as np
    from mindspore import Tensor

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


def test_fold_batchnorm_keeps_the_logits(graph_mode):
    import numpy as np
    from mindspore import Tensor, nn

    from src.utils.perf import prepare_network

    x = Tensor(np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32))
    reference = _tiny_net_with_bn_stats()(x).asnumpy()
    net = prepare_network(_tiny_net_with_bn_stats(), train=False, fold_bn=True)
    assert not any(isinstance(c, nn.BatchNorm2d) for _, c in net.cells_and_names())
    names = [p.name for p in net.get_parameters()]
    assert len(names) == len(set(names))
    np.testing.assert_allclose(net(x).asnumpy(), reference, rtol=1e-5, atol=1e-6)


def test_prepare_network_train_options():
    from mindspore import nn

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
