"""src/checkpoint/metadata.py and the loader's guards, in process: the one metadata writer and reader (round trip;
every bad recorded value a CheckpointError naming the key), the one checkpoint -> model resolution of eval,
predict and export, malformed safetensors headers, and weights that are not finite (refused by the loader, so
by eval, predict, export, the hub entry and a warm start alike)."""
import json
import logging
import struct

import numpy as np
import pytest
import mindspore as ms

from src.checkpoint import (CheckpointError, checkpoint_model_info, load_weights, read_state_dict, resolve_model,
                            restore_training_state, save_checkpoint_atomic)
from src.config import load_config
from src.image_classification import create_model


@pytest.fixture(scope="module")
def tiny():
    return create_model("cspdarknet_tiny", num_classes=3, seed=0)


def _params(net, **scalars):
    """The network's parameters as save entries, plus scalar tensors (``epoch=...``) as training saves them."""
    entries = [{"name": n, "data": p} for n, p in net.parameters_dict().items()]
    return entries + [{"name": k, "data": ms.Tensor(np.array(v))} for k, v in scalars.items()]


def test_writer_and_reader_round_trip(tmp_path, tiny, save_trained):
    latin = b"caf\xe9".decode("utf-8", "surrogateescape")
    path = save_trained(tiny, tmp_path / "m.ckpt", class_names=["tea", latin, "rose"], image_size="32,48",
                        eval_resize="shorter", crop_pct=0.9)
    info = checkpoint_model_info(path)
    assert (info["arch"], info["num_classes"], info["layout"], info["problem"]) == ("cspdarknet_tiny", 3, "own", None)
    assert info["preprocess"] == {"image_size": "32,48", "eval_resize": "shorter", "crop_pct": 0.9}
    assert info["class_names"] == ["tea", latin, "rose"] and info["class_names_source"] == f"recorded in {path}"


BAD_METADATA = [
    ({"arch": "resnet50"}, "arch='resnet50'"),
    ({"num_classes": "three"}, "num_classes='three'"),
    ({"num_classes": "7"}, "num_classes=7: its classifier head has 3 rows"),
    ({"image_size": "big"}, "image_size='big'"),
    ({"image_size": "0,32"}, "image_size='0,32'"),
    ({"image_size": "40000,40000"}, "image_size='40000,40000'"),
    ({"eval_resize": "stretch"}, "eval_resize='stretch'"),
    ({"crop_pct": "1.5"}, "crop_pct='1.5'"),
    ({"crop_pct": "nan"}, "crop_pct='nan'"),
    ({"class_names": "[not json"}, "class_names='[not json'"),
    ({"class_names": json.dumps(["a", "b", "c", "d"])}, "at most num_classes names"),
    ({"class_names": json.dumps({"a": 0})}, "a JSON list"),
]


@pytest.mark.parametrize("meta, message", BAD_METADATA, ids=[m[1].split("=")[0].split()[0] for m in BAD_METADATA])
def test_bad_metadata_is_an_error_naming_the_key(tmp_path, tiny, meta, message):
    """Each of these was read silently before (ignored, or a traceback further on)."""
    path = save_checkpoint_atomic(tiny, tmp_path / "m.ckpt", metadata=meta)
    with pytest.raises(CheckpointError, match="bad metadata") as err:
        checkpoint_model_info(path)
    assert message in str(err.value) and str(path) in str(err.value)
    with pytest.raises(CheckpointError, match="bad metadata"):
        load_weights(create_model("cspdarknet_tiny", num_classes=3), path)  # the loader reads it the same way


@pytest.mark.parametrize("scalars, message", [({"epoch": -3}, "epoch=-3"), ({"epoch": 2.5}, "epoch=2.5"),
                                              ({"epoch": 1, "best_top1": float("nan")}, "best_top1=nan")])
def test_bad_training_counters_are_refused_before_anything_is_restored(tmp_path, tiny, scalars, message):
    path = save_checkpoint_atomic(_params(tiny, **scalars), tmp_path / "t.ckpt")
    with pytest.raises(CheckpointError, match="bad metadata") as err:
        # train_step None: the refusal comes before the file touches any network
        restore_training_state(str(path), None, None, "cspdarknet_tiny", logging.getLogger("test"))
    assert message in str(err.value)


def _safetensors(path, header, data=b""):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


GOOD = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
BAD_HEADERS = {
    "not_an_object": [GOOD],
    "metadata_not_strings": {"__metadata__": {"arch": 3}, "w": GOOD},
    "entry_not_an_object": {"w": "F32"},
    "no_dtype": {"w": {"shape": [2], "data_offsets": [0, 8]}},
    "dtype_a_list": {"w": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}},
    "negative_shape": {"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}},
    "offsets_past_the_end": {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 800]}},
    "one_offset": {"w": {"dtype": "F32", "shape": [2], "data_offsets": [8]}},
    "reversed_offsets": {"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}},
    "size_mismatch": {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
    "huge_shape": {"w": {"dtype": "F32", "shape": [2 ** 40, 2 ** 40], "data_offsets": [0, 8]}},
    "unknown_dtype": {"w": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}},
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_malformed_safetensors_headers_are_checkpoint_errors(tmp_path, case):
    path = _safetensors(tmp_path / "m.safetensors", BAD_HEADERS[case], b"\0" * 8)
    with pytest.raises(CheckpointError, match=str(path)):
        read_state_dict(path)


def test_deeply_nested_safetensors_header(tmp_path):
    raw = b"[" * 100000
    path = tmp_path / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        read_state_dict(path)


def test_a_good_safetensors_header_still_reads(tmp_path):
    data = np.array([1.5, -2.0], np.float32).tobytes()
    arrays, meta = read_state_dict(_safetensors(tmp_path / "ok.safetensors", {"__metadata__": {"arch": "x"},
                                                                            "w": GOOD}, data))
    assert meta == {"arch": "x"} and arrays["w"].tolist() == [1.5, -2.0]


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_weights_that_are_not_finite_are_refused_by_the_loader_and_the_hub(tmp_path, tiny, save_trained, value):
    import mindspore_hub_conf

    broken = create_model("cspdarknet_tiny", num_classes=3, seed=0)
    gamma = next(p for n, p in broken.parameters_dict().items() if n.endswith("bn.gamma"))
    bad = gamma.asnumpy().copy()
    bad[0] = value
    gamma.set_data(ms.Tensor(bad))
    path = save_trained(broken, tmp_path / "broken.ckpt")
    with pytest.raises(CheckpointError, match="1 of .* weight tensors hold NaN or infinite values"):
        load_weights(create_model("cspdarknet_tiny", num_classes=3), path)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        mindspore_hub_conf.create_network("cspdarknet_tiny", num_classes=3, checkpoint_path=str(path))
    load_weights(create_model("cspdarknet_tiny", num_classes=3), save_trained(tiny, tmp_path / "fine.ckpt"))


def test_resolve_model_precedence_and_contradictions(tmp_path, tiny, save_trained, caplog):
    path = str(save_trained(tiny, tmp_path / "m.ckpt", image_size="32,48", eval_resize="shorter"))
    spec = resolve_model(load_config([]), path)  # the defaults: cspdarknet53, 1000 classes
    assert (spec.arch, spec.num_classes, spec.class_names) == ("cspdarknet_tiny", 3, ["class0", "class1", "class2"])
    assert spec.preprocess == {"image_size": "32,48", "eval_resize": "shorter", "crop_pct": 0.875}
    given = resolve_model(load_config(["--image_size=40,40", "--arch=cspdarknet_tiny"]), path)
    assert given.preprocess["image_size"] == "40,40" and given.preprocess["eval_resize"] == "shorter"
    with pytest.raises(CheckpointError, match="holds weights for arch 'cspdarknet_tiny' but --arch=cspdarknet53"):
        resolve_model(load_config(["--arch=cspdarknet53"]), path)
    with pytest.raises(CheckpointError, match="has a 3-class head but --num_classes=5"):
        resolve_model(load_config(["--num_classes=5"]), path)
    # an own checkpoint without recorded preprocessing (written before checkpoints recorded it) is said
    old = save_checkpoint_atomic(tiny, tmp_path / "old.ckpt", metadata={"arch": "cspdarknet_tiny"})
    log = logging.getLogger("resolve_model_test")
    with caplog.at_level(logging.WARNING, logger="resolve_model_test"):
        spec = resolve_model(load_config([]), str(old), log=log)
    assert spec.preprocess["image_size"] == "64,64" and "records no image_size" in caplog.text
