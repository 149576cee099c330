"""Tests for the data package (src/data/) on tiny real image files written by each test (32-64 px)."""
import io
import logging
import os

import numpy as np
import pytest
from PIL import Image

from src.config import ConfigError, load_config
from src.data import DatasetError, create_dataset, load_class_index, save_class_index
from src.data import checks, pipeline
from src.data.pipeline import create_dataset_from_config
from src.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_resize_size, train_transforms

MEAN = np.array(IMAGENET_MEAN, np.float64)
STD = np.array(IMAGENET_STD, np.float64)
DUMPS = ("abnormal_image.jpg", "unsupported_image.")


# ------------------------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def _cwd_without_engine_dumps(tmp_path, monkeypatch):
    """Run every test in its own CWD and check the engine dumped no image there."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield
    left = [n for n in os.listdir(cwd) if n.startswith(DUMPS)]
    assert not left, f"engine dump files left in the working directory: {left}"


def rand_img(h, w, seed=0, channels=3):
    shape = (h, w, channels) if channels > 1 else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(arr_or_img, path, fmt=None, **kw):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    im.save(path, format=fmt, **kw)
    return path


def make_tree(root, n_per_class=(4, 4), size=(40, 48), ext="png"):
    for c, n in enumerate(n_per_class):
        for i in range(n):
            save(rand_img(*size, seed=100 * c + i), os.path.join(root, f"class_{c}", f"{i:03d}.{ext}"))
    return str(root)


def solid_tree(root, n, per_class=None):
    """Image k is a solid grey of value 10*k+5 (identifiable after any crop/flip)."""
    for k in range(n):
        c = k // per_class if per_class else 0
        save(np.full((36, 36, 3), 10 * k + 5, np.uint8), os.path.join(root, f"c{c}", f"{k:03d}.png"))
    return str(root)


def rows(bundle):
    return list(bundle.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))


def all_images(bundle):
    r = rows(bundle)
    return np.concatenate([x for x, _ in r]), np.concatenate([y for _, y in r])


def denorm(chw):
    """Normalized CHW -> HWC 0-255 floats."""
    return chw.transpose(1, 2, 0).astype(np.float64) * STD + MEAN


def identify(images):
    """Solid-grey image ids (see solid_tree)."""
    v = np.rint(denorm_batch(images)[:, :, :, 0].mean(axis=(1, 2)))
    return [int((x - 5) // 10) for x in v]


def denorm_batch(x):
    return x.transpose(0, 2, 3, 1).astype(np.float64) * STD + MEAN


def manual_bilinear(img, oh, ow):
    """Bilinear resize with half-pixel centres (the engine's/OpenCV's INTER_LINEAR), float result."""
    h, w = img.shape[:2]
    img = img.astype(np.float64)
    ys = np.clip((np.arange(oh) + 0.5) * h / oh - 0.5, 0, h - 1)
    xs = np.clip((np.arange(ow) + 0.5) * w / ow - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    return (img[y0][:, x0] * (1 - wy) * (1 - wx) + img[y0][:, x1] * (1 - wy) * wx
            + img[y1][:, x0] * wy * (1 - wx) + img[y1][:, x1] * wy * wx)


def manual_center_crop(img, h, w):
    top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2  # the engine floors the offset
    return img[top:top + h, left:left + w]


def manual_normalize_chw(hwc):
    return ((hwc.astype(np.float64) - MEAN) / STD).transpose(2, 0, 1)


# ------------------------------------------------------------------------------ eval path, exact
def test_eval_sizes_follow_zoo_squash_and_timm_shorter():
    assert eval_resize_size(224) == (256, 256)
    assert eval_resize_size(32) == (37, 37)
    assert eval_resize_size([64, 64]) == (73, 73)
    assert eval_resize_size(224, "shorter") == 256
    assert eval_resize_size(32, "shorter", 0.875) == 36
    assert eval_resize_size((32, 48), "shorter") == (36, 54)


def test_eval_output_exact_on_known_png(tmp_path):
    # A 37x37 image: the squash resize of a 32 px eval is 37x37, so Resize leaves it unchanged and the
    # whole output is exact: center crop (offset floor(5/2)=2), (x - mean) / std, HWC -> CHW.
    img = rand_img(37, 37, seed=1)
    save(img, str(tmp_path / "d" / "a" / "x.png"))
    b = create_dataset(str(tmp_path / "d"), 32, 1, mode="eval", num_parallel_workers=1)
    (x, y), = rows(b)
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int32
    expect = manual_normalize_chw(manual_center_crop(img, 32, 32))
    np.testing.assert_allclose(x[0], expect, rtol=0, atol=1e-5)
    assert manual_center_crop(img, 32, 32)[0, 0, 0] == img[2, 2, 0]


def test_eval_output_exact_on_known_jpeg_against_pil_decode(tmp_path):
    # The engine's JPEG decoder and PIL's give identical pixels (checked here); the rest is exact math.
    path = save(rand_img(37, 37, seed=2), str(tmp_path / "d" / "a" / "x.jpg"), quality=90)
    pil = np.asarray(Image.open(path).convert("RGB"))
    (x, _), = rows(create_dataset(str(tmp_path / "d"), 32, 1, mode="eval", num_parallel_workers=1))
    np.testing.assert_allclose(x[0], manual_normalize_chw(manual_center_crop(pil, 32, 32)), rtol=0, atol=1e-5)


def test_eval_squash_resize_matches_manual_bilinear(tmp_path):
    # 45x60 -> squash 37x37 -> crop 32. The engine resizes in fixed point: within 1 grey level of the
    # float reference (exactly equal to the same vision ops applied eagerly, checked too).
    import mindspore.dataset.vision as V
    img = rand_img(45, 60, seed=3)
    save(img, str(tmp_path / "d" / "a" / "x.png"))
    (x, _), = rows(create_dataset(str(tmp_path / "d"), 32, 1, mode="eval", num_parallel_workers=1))
    ref = manual_center_crop(manual_bilinear(img, 37, 37), 32, 32)
    assert np.abs(denorm(x[0]) - ref).max() <= 1.0 + 1e-4
    eager = img
    for op in (V.Resize((37, 37)), V.CenterCrop(32), V.Normalize(IMAGENET_MEAN, IMAGENET_STD), V.HWC2CHW()):
        eager = op(eager)
    np.testing.assert_array_equal(x[0], eager)


def test_eval_shorter_resize_keeps_aspect(tmp_path):
    # 36x72 with size 32 and crop_pct 0.875: shorter side floor(32/0.875)=36 already -> no resize,
    # crop rows 2..33, cols 20..51, exact.
    img = rand_img(36, 72, seed=4)
    save(img, str(tmp_path / "d" / "a" / "x.png"))
    b = create_dataset(str(tmp_path / "d"), 32, 1, mode="eval", eval_resize="shorter", num_parallel_workers=1)
    (x, _), = rows(b)
    np.testing.assert_allclose(x[0], manual_normalize_chw(img[2:34, 20:52]), rtol=0, atol=1e-5)
    # squash on the same image would change the aspect: the outputs differ
    (xs, _), = rows(create_dataset(str(tmp_path / "d"), 32, 1, mode="eval", num_parallel_workers=1))
    assert not np.allclose(xs, x)


def test_eval_keeps_every_image_and_order(tmp_path):
    root = solid_tree(tmp_path / "d", 10, per_class=5)
    b = create_dataset(root, 32, 4, mode="eval", num_parallel_workers=2)
    assert (b.num_images, b.steps_per_epoch) == (10, 3)
    assert b.dataset.get_dataset_size() == 3
    x, y = all_images(b)
    assert identify(x) == list(range(10))
    assert y.tolist() == [0] * 5 + [1] * 5


# ------------------------------------------------------------------------------ train path
def test_train_transforms_are_the_zoo_recipe():
    import mindspore.dataset.vision as V
    ops = train_transforms(224)
    assert [type(o) for o in ops] == [V.RandomCropDecodeResize, V.RandomHorizontalFlip, V.RandomColorAdjust,
                                      V.Normalize, V.HWC2CHW]
    assert ops[0].size == (224, 224) and ops[0].scale == (0.08, 1.0) and ops[0].ratio == (0.75, 1.333)
    assert ops[1].prob == 0.5
    assert ops[2].brightness == ops[2].contrast == ops[2].saturation == (0.6, 1.4) and ops[2].hue == (0, 0)
    np.testing.assert_allclose(ops[3].mean, [123.675, 116.28, 103.53])
    np.testing.assert_allclose(ops[3].std, [58.395, 57.12, 57.375])
    assert train_transforms(32, crop_scale_min=0.5)[0].scale == (0.5, 1.0)
    with pytest.raises(ConfigError, match="crop_scale_min"):   # checked where every option is: the config
        train_transforms(32, crop_scale_min=0.0)


def test_train_output_statistics_and_flip(tmp_path):
    # Grey horizontal ramp (dark left, bright right): any crop, resize and colour jitter keeps it
    # increasing to the right, so the sign of right-minus-left tells whether the image was flipped.
    ramp = np.tile(np.linspace(0, 255, 64), (48, 1)).round().astype(np.uint8)
    for i in range(8):
        save(np.dstack([ramp] * 3), str(tmp_path / "d" / f"c{i % 2}" / f"{i}.png"))
    b = create_dataset(str(tmp_path / "d"), 32, 8, mode="train", num_parallel_workers=2, seed=3)
    assert (b.num_images, b.steps_per_epoch) == (8, 1)
    it = b.dataset.create_tuple_iterator(output_numpy=True, num_epochs=8)
    xs, ys = [], []
    for _ in range(8):
        for x, y in it:
            xs.append(x)
            ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert x.shape == (64, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int32
    lo, hi = (0 - MEAN) / STD, (255 - MEAN) / STD
    for c in range(3):
        assert x[:, c].min() >= lo[c] - 1e-5 and x[:, c].max() <= hi[c] + 1e-5
    assert set(y.tolist()) == {0, 1}
    slope = x[:, 0, :, -4:].mean(axis=(1, 2)) - x[:, 0, :, :4].mean(axis=(1, 2))
    flipped = int((slope < 0).sum())
    assert 10 <= flipped <= 54, flipped  # Binomial(64, 0.5): outside this range with p < 1e-6
    # random crops: crops differ between samples
    assert len({round(float(s), 3) for s in slope}) > 32


@pytest.mark.parametrize("opts", [
    dict(auto_augment="randaugment"), dict(auto_augment="autoaugment"), dict(re_prob=1.0),
    dict(color_jitter=0.0), dict(mixup_alpha=0.2), dict(cutmix_alpha=1.0),
    dict(mixup_alpha=0.8, cutmix_alpha=1.0, mixup_prob=0.5)])
def test_each_augmentation_option_runs(tmp_path, opts):
    root = make_tree(tmp_path / "d", (3, 3))
    b = create_dataset(root, 32, 3, mode="train", num_parallel_workers=1, seed=0, **opts)
    out = rows(b)
    assert len(out) == 2
    for x, y in out:
        assert x.shape == (3, 3, 32, 32) and x.dtype == np.float32 and np.isfinite(x).all()
        if opts.get("mixup_alpha") or opts.get("cutmix_alpha"):
            assert y.shape == (3, 2) and y.dtype == np.float32
        else:
            assert y.shape == (3,) and y.dtype == np.int32
    if opts.get("re_prob"):  # erased pixels are 0 in all three channels (the mean colour)
        assert all((np.abs(x).sum(axis=1) == 0).any(axis=(1, 2)).all() for x, _ in out)


@pytest.mark.parametrize("opts", [dict(mixup_alpha=0.4), dict(cutmix_alpha=1.0),
                                  dict(mixup_alpha=0.8, cutmix_alpha=1.0, mixup_prob=0.7)])
def test_mixup_cutmix_soft_labels_sum_to_one(tmp_path, opts):
    root = make_tree(tmp_path / "d", (4, 4, 4))
    b = create_dataset(root, 32, 6, mode="train", num_parallel_workers=1, seed=1, num_classes=5, **opts)
    ys = [y for _, y in rows(b)]
    assert len(ys) == 2
    for y in ys:
        assert y.shape == (6, 5) and y.dtype == np.float32
        np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
        assert (y >= 0).all() and (y <= 1).all() and (y[:, 3:] == 0).all()
    # eval never mixes
    _, ye = rows(create_dataset(root, 32, 12, mode="eval", num_parallel_workers=1, **opts))[0]
    assert ye.dtype == np.int32 and ye.shape == (12,)


# ------------------------------------------------------------------------------ sharding, seeds
def test_eval_shards_are_disjoint_and_cover(tmp_path):
    root = solid_tree(tmp_path / "d", 11)
    ids = []
    for rank in range(3):
        b = create_dataset(root, 32, 2, mode="eval", rank=rank, group_size=3, num_parallel_workers=1)
        got = identify(all_images(b)[0])
        assert len(got) == b.num_images
        ids.append(got)
    assert sorted(sum(ids, [])) == list(range(11))
    assert [len(s) for s in ids] == [4, 4, 3]


def test_train_shards_are_equal_disjoint_and_cover_each_epoch(tmp_path):
    root = solid_tree(tmp_path / "d", 12)
    per_epoch = {0: [], 1: []}
    for rank in range(2):
        b = create_dataset(root, 32, 3, mode="train", rank=rank, group_size=2, num_parallel_workers=1,
                           seed=11, color_jitter=0)
        assert (b.num_images, b.steps_per_epoch, b.total_images) == (6, 2, 12)
        it = b.dataset.create_tuple_iterator(output_numpy=True, num_epochs=2)
        for epoch in range(2):
            per_epoch[epoch].append(identify(np.concatenate([x for x, _ in it])))
    for epoch in range(2):
        a, b2 = per_epoch[epoch]
        assert not set(a) & set(b2) and sorted(a + b2) == list(range(12))
    assert per_epoch[0][0] != per_epoch[1][0]  # reshuffled every epoch


def test_train_shards_pad_to_equal_size(tmp_path):
    root = solid_tree(tmp_path / "d", 10)
    sizes, seen = [], set()
    for rank in range(3):
        b = create_dataset(root, 32, 2, mode="train", rank=rank, group_size=3, num_parallel_workers=1,
                           drop_remainder=False, seed=5, color_jitter=0)
        got = identify(all_images(b)[0])
        sizes.append((b.num_images, len(got)))
        seen.update(got)
    assert sizes == [(4, 4)] * 3 and seen == set(range(10))


def test_order_depends_on_the_seed_argument_only(tmp_path):
    # The global engine seed (which create_dataset and the trainer move per rank and epoch for the random
    # ops) must not change the order, or ranks would drift apart.
    import mindspore.dataset as ds
    root = solid_tree(tmp_path / "d", 8)
    orders = []
    for engine_seed in (21, 5):
        ds.config.set_seed(engine_seed)
        ids = [identify(all_images(create_dataset(root, 32, 2, rank=r, group_size=2, color_jitter=0, seed=3,
                                                  num_parallel_workers=1))[0]) for r in (1, 0)]
        assert sorted(ids[0] + ids[1]) == list(range(8))
        orders.append(ids)
    assert orders[0] == orders[1]


def test_same_seed_same_order(tmp_path):
    root = solid_tree(tmp_path / "d", 12)
    orders = [identify(all_images(create_dataset(root, 32, 4, num_parallel_workers=2, seed=s, color_jitter=0))[0])
              for s in (7, 7, 8)]
    assert orders[0] == orders[1] and orders[0] != orders[2]
    assert sorted(orders[0]) == list(range(12))


def test_ranks_draw_different_augmentations(tmp_path):
    # identical images on both ranks: with one shared op seed every rank would crop/flip/jitter alike
    ramp = np.tile(np.linspace(0, 255, 64), (48, 1)).round().astype(np.uint8)
    img = np.dstack([ramp, ramp.T[:48, :48].repeat(2, 1)[:, :64], ramp // 2])
    for i in range(8):
        save(img, str(tmp_path / "d" / "a" / f"{i}.png"))
    out = [all_images(create_dataset(str(tmp_path / "d"), 32, 4, rank=r, group_size=2, seed=3,
                                     num_parallel_workers=1))[0] for r in range(2)]
    assert (np.abs(out[0] - out[1]).max(axis=(1, 2, 3)) > 0).all()


def test_epoch_sampler_set_epoch_and_unshuffled_train(tmp_path):
    root = solid_tree(tmp_path / "d", 6)
    b = create_dataset(root, 32, 2, seed=4, color_jitter=0, num_parallel_workers=1)
    assert b.sampler is not None and len(b.sampler) == 6
    expect = b.sampler.indices(3).tolist()
    b.sampler.set_epoch(3)
    assert identify(all_images(b)[0]) == expect
    b = create_dataset(root, 32, 2, shuffle=False, color_jitter=0, num_parallel_workers=1)
    assert identify(all_images(b)[0]) == list(range(6))


# ------------------------------------------------------------------------------ data_list
def test_data_list_train_and_eval(tmp_path, caplog):
    root = tmp_path / "d"
    for k in range(6):
        save(np.full((36, 36, 3), 10 * k + 5, np.uint8), str(root / "imgs" / f"im {k}.png"))
    labels = [3, 1, 4, 1, 5, 2]
    lines = ["# relative_path label", ""] + [f"imgs/im {k}.png {labels[k]}" for k in range(6)]
    lines.append("imgs/missing.png 0")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="src.data"):
        b = create_dataset(str(root), 32, 4, mode="eval", data_list=str(tmp_path / "list.txt"),
                           num_parallel_workers=1)
    assert b.num_images == 6 and [os.path.basename(p) for p, _ in b.skipped] == ["missing.png"]
    assert "missing.png" in caplog.text
    x, y = all_images(b)
    assert identify(x) == list(range(6)) and y.tolist() == labels
    assert b.class_to_idx == {str(i): i for i in range(6)}
    bt = create_dataset(str(root), 32, 2, mode="train", data_list=str(tmp_path / "list.txt"),
                        num_parallel_workers=1, num_classes=10, seed=0)
    assert bt.steps_per_epoch == 3 and len(rows(bt)) == 3


def test_data_list_bad_line_names_file_and_line(tmp_path):
    (tmp_path / "list.txt").write_text("a.png 1\nb.png one\n")
    with pytest.raises(DatasetError, match=r"list\.txt:2"):
        create_dataset(str(tmp_path), 32, 1, data_list=str(tmp_path / "list.txt"))


def test_data_list_label_out_of_range(tmp_path):
    save(rand_img(8, 8), str(tmp_path / "a.png"))
    (tmp_path / "list.txt").write_text("a.png 7\n")
    with pytest.raises(DatasetError, match="num_classes=5"):
        create_dataset(str(tmp_path), 32, 1, data_list=str(tmp_path / "list.txt"), num_classes=5)


# ------------------------------------------------------------------------------ bad data, one by one
def _bundle_with_extra(tmp_path, write_extra, mode="eval", **kwargs):
    root = make_tree(tmp_path / "d", (2, 2))
    extra = write_extra(os.path.join(root, "class_1"))
    return create_dataset(root, 32, 1, mode=mode, num_parallel_workers=1, **kwargs), extra


def test_missing_root_raises(tmp_path):
    with pytest.raises(DatasetError, match="nope"):
        create_dataset(str(tmp_path / "nope"), 32, 1)


def test_empty_root_raises(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty"):
        create_dataset(str(tmp_path / "empty"), 32, 1)


def test_root_with_only_empty_class_folders_raises(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "a" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="no image files"):
        create_dataset(str(tmp_path / "d"), 32, 1)


def test_empty_class_folder_keeps_index_and_warns(tmp_path, caplog):
    root = make_tree(tmp_path / "d", (2, 0, 2))
    (tmp_path / "d" / "class_1").mkdir(exist_ok=True)
    with caplog.at_level(logging.WARNING, logger="src.data"):
        b = create_dataset(root, 32, 2, mode="eval", num_parallel_workers=1)
    assert b.class_to_idx == {"class_0": 0, "class_1": 1, "class_2": 2}
    assert "class_1" in caplog.text
    assert sorted(all_images(b)[1].tolist()) == [0, 0, 2, 2]


def test_not_an_image_is_skipped_and_reported(tmp_path, caplog):
    def extra(d):
        p = os.path.join(d, "notes.jpg")
        with open(p, "w") as f:
            f.write("this is not an image\n")
        return p
    with caplog.at_level(logging.WARNING, logger="src.data"):
        b, p = _bundle_with_extra(tmp_path, extra)
    assert [s[0] for s in b.skipped] == [p] and "not an image" in b.skipped[0][1]
    assert "notes.jpg" in caplog.text and "skipped 1 of 5" in caplog.text
    assert b.num_images == 4 and len(rows(b)) == 4


def test_truncated_jpeg_is_skipped(tmp_path):
    def extra(d):
        buf = io.BytesIO()
        Image.fromarray(rand_img(48, 64, seed=9)).save(buf, "JPEG", quality=90)
        p = os.path.join(d, "cut.jpg")
        with open(p, "wb") as f:
            f.write(buf.getvalue()[: len(buf.getvalue()) * 6 // 10])  # a real JPEG cut short
        return p
    for mode in ("train", "eval"):
        b, p = _bundle_with_extra(tmp_path, extra, mode)
        assert [s[0] for s in b.skipped] == [p] and "truncated" in b.skipped[0][1]
        assert len(rows(b)) == 4


def test_empty_file_is_skipped(tmp_path):
    def extra(d):
        p = os.path.join(d, "zero.png")
        open(p, "wb").close()
        return p
    b, p = _bundle_with_extra(tmp_path, extra)
    assert b.skipped == [(p, "empty file")] and len(rows(b)) == 4


def test_jpeg_with_trailing_bytes_is_kept(tmp_path):
    def extra(d):
        buf = io.BytesIO()
        Image.fromarray(rand_img(40, 40, seed=3)).save(buf, "JPEG")
        p = os.path.join(d, "trail.jpg")
        with open(p, "wb") as f:
            f.write(buf.getvalue() + b"\0" * 200)
        return p
    b, _ = _bundle_with_extra(tmp_path, extra)
    assert b.skipped == [] and len(rows(b)) == 5


def _single(tmp_path, im, name, **save_kw):
    path = save(im, str(tmp_path / "d" / "a" / name), **save_kw)
    b = create_dataset(str(tmp_path / "d"), 32, 1, mode="eval", num_parallel_workers=1)
    (x, _), = rows(b)
    return b, denorm(x[0]), path


def test_grayscale_jpeg_becomes_rgb(tmp_path):
    b, out, p = _single(tmp_path, Image.fromarray(rand_img(37, 37, channels=1, seed=5), "L"), "g.jpg")
    ref = np.asarray(Image.open(p).convert("RGB"))
    np.testing.assert_allclose(out, manual_center_crop(ref, 32, 32), atol=1e-3)
    assert b.skipped == [] and b.converted == []


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    b, out, p = _single(tmp_path, Image.fromarray(rand_img(37, 37, seed=6)).convert("CMYK"), "c.jpg")
    assert Image.open(p).mode == "CMYK"
    ref = np.asarray(Image.open(p).convert("RGB"))
    np.testing.assert_allclose(out, manual_center_crop(ref, 32, 32), atol=1e-3)
    assert b.skipped == []


def test_png_is_used(tmp_path):
    img = rand_img(37, 37, seed=7)
    b, out, _ = _single(tmp_path, img, "p.png")
    np.testing.assert_allclose(out, manual_center_crop(img, 32, 32), atol=1e-3)


def test_rgba_png_drops_alpha(tmp_path):
    img = rand_img(37, 37, seed=8)
    rgba = np.dstack([img, np.full((37, 37), 100, np.uint8)])
    b, out, _ = _single(tmp_path, Image.fromarray(rgba, "RGBA"), "a.png")
    np.testing.assert_allclose(out, manual_center_crop(img, 32, 32), atol=1e-3)


def test_palette_png_and_16bit_png(tmp_path):
    pal = Image.fromarray(rand_img(37, 37, seed=9)).convert("P")
    b, out, p = _single(tmp_path, pal, "p.png")
    np.testing.assert_allclose(out, manual_center_crop(np.asarray(pal.convert("RGB")), 32, 32), atol=1e-3)
    g8 = rand_img(37, 37, seed=10, channels=1)
    b, out, _ = _single(tmp_path / "b", Image.fromarray(g8.astype(np.uint16) * 257), "g16.png")
    np.testing.assert_allclose(out, np.dstack([manual_center_crop(g8, 32, 32)] * 3), atol=1e-3)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_formats_the_engine_cannot_decode_are_converted(tmp_path, fmt):
    img = np.asarray(Image.fromarray(rand_img(37, 37, seed=11)).convert("P").convert("RGB"))
    kw = {"lossless": True} if fmt == "WEBP" else {}
    b, out, p = _single(tmp_path, Image.fromarray(img), f"x.{fmt.lower()}", **kw)
    assert b.converted == [p] and b.skipped == []
    np.testing.assert_allclose(out, manual_center_crop(np.asarray(Image.open(p).convert("RGB")), 32, 32),
                               atol=1e-3)


def test_nothing_usable_raises(tmp_path):
    d = tmp_path / "d" / "a"
    d.mkdir(parents=True)
    (d / "x.jpg").write_bytes(b"")
    (d / "y.png").write_text("nope")
    with pytest.raises(DatasetError, match="no usable image"):
        create_dataset(str(tmp_path / "d"), 32, 1)


def _garbage_jpeg(d):
    """Starts like a JPEG and ends with the EOI marker, garbage between: passes the cheap head/tail check."""
    p = os.path.join(d, "garbage.jpg")
    body = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    with open(p, "wb") as f:
        f.write(b"\xff\xd8\xff" + body + b"\xff\xd9")
    return p


def test_full_check_skips_a_corrupt_file_that_passes_the_cheap_check(tmp_path):
    b, bad = _bundle_with_extra(tmp_path, _garbage_jpeg, "eval", verify_manifest="none")
    assert [p for p, _ in b.skipped] == [bad] and "decode" in b.skipped[0][1]
    assert b.num_images == 4 and len(rows(b)) == 4
    assert checks.collect_engine_dumps() == []  # the engine never saw it


def test_engine_skips_corrupt_file_when_the_full_check_is_off_and_leaves_no_dump(tmp_path):
    # verify_files=False: the cheap check lets it through, the engine's Decode fails on it, SKIP mode drops
    # it and its ./abnormal_image.jpg dump is moved away
    b, _ = _bundle_with_extra(tmp_path, _garbage_jpeg, "eval", verify_files=False)
    assert b.skipped == [] and b.num_images == 5
    assert len(rows(b)) == 4
    moved = checks.collect_engine_dumps()
    assert len(moved) == 1 and os.path.basename(moved[0]).endswith("abnormal_image.jpg")
    assert not [n for n in os.listdir(".") if n.startswith(DUMPS)]
    for m in moved:
        os.remove(m)


# ------------------------------------------------------------------------------ options and helpers
def test_bad_options_are_refused_naming_the_key(tmp_path):
    root = make_tree(tmp_path / "d", (1,))
    for kw in (dict(auto_augment="trivial"), dict(re_prob=2.0), dict(mixup_prob=-1), dict(per_batch_size=0),
               dict(sampler="weighted"), dict(dataset_format="mindrecord", data_list="x.txt")):
        key = next(iter(kw))
        with pytest.raises(ConfigError, match=key if key != "dataset_format" else "data_list"):
            create_dataset(root, 32, **({"per_batch_size": 1} | kw))
    with pytest.raises(TypeError, match="not a data option: num_workerz"):
        create_dataset(root, 32, 1, num_workerz=2)
    for kw in (dict(eval_resize="crop", mode="eval"), dict(crop_pct=0, mode="eval"), dict(mode="test"),
               dict(rank=2, group_size=2)):
        with pytest.raises(DatasetError):
            create_dataset(root, 32, 1, **kw)
    with pytest.raises(DatasetError, match="image_size"):
        create_dataset(root, "big", 1)
    with pytest.raises(DatasetError, match="per_batch_size=4"):
        create_dataset(root, 32, 4, mode="train")


def test_class_index_roundtrip(tmp_path):
    m = {"b": 1, "a": 0, "ünï": 2}
    save_class_index(m, str(tmp_path / "run" / "class_index.json"))
    assert load_class_index(str(tmp_path / "run" / "class_index.json")) == m
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(DatasetError, match="bad.json"):
        load_class_index(str(tmp_path / "bad.json"))
    with pytest.raises(DatasetError, match="missing.json"):
        load_class_index(str(tmp_path / "missing.json"))


def test_given_class_index_is_used(tmp_path, caplog):
    root = make_tree(tmp_path / "d", (1, 1))
    with caplog.at_level(logging.WARNING, logger="src.data"):
        b = create_dataset(root, 32, 1, mode="eval", class_to_idx={"class_1": 0, "other": 1})
    assert "class_0" in caplog.text and b.num_images == 1
    assert all_images(b)[1].tolist() == [0]


def test_create_dataset_from_config(tmp_path):
    root = make_tree(tmp_path / "d", (2, 2))
    data = load_config([f"--data_dir={root}", "--per_batch_size=2", "--num_parallel_workers=1"]).data
    pre = dict(image_size="32,32", eval_resize="squash", crop_pct=0.875)
    b = create_dataset_from_config(data, "train", seed=1, num_classes=2, **pre)
    assert b.steps_per_epoch == 2 and rows(b)[0][0].shape == (2, 3, 32, 32)
    b = create_dataset_from_config(data, "eval", seed=1, num_classes=2, data_dir=root, **pre)
    assert b.num_images == 4 and rows(b)[0][0].shape == (2, 3, 32, 32)


@pytest.mark.parametrize("cpus, group_size, workers", [
    (2, 1, 2), (32, 1, 16), (192, 1, 16),      # all the cores, at most 16
    (32, 8, 4), (32, 100, 4), (32, 0, 16),     # shared by the host's devices (at most 8 a host)
    (4, 8, 1), (1, 1, 1),                      # never below 1
])
def test_default_workers(monkeypatch, cpus, group_size, workers):
    monkeypatch.setattr(pipeline, "available_cpus", lambda: cpus)
    assert pipeline.default_num_workers(group_size) == workers


def test_a_plain_list_of_files_without_labels(tmp_path, caplog):
    """The reader predict uses: files in the given order, labels 0, the unusable ones named once and skipped."""
    paths = [save(np.full((37, 37, 3), 10 * k + 5, np.uint8), str(tmp_path / "p" / f"{k}.png")) for k in range(5)]
    (tmp_path / "p" / "text.png").write_text("no image")
    given = paths[:2] + [str(tmp_path / "p" / "text.png")] + paths[2:][::-1]
    with caplog.at_level(logging.WARNING, logger="src.data"):
        b = create_dataset("", 32, 2, mode="eval", files=given, num_classes=7, where="image_path=p",
                           verify_manifest="none", num_parallel_workers=1)
    assert b.skipped == [(given[2], b.skipped[0][1])] and "not an image" in b.skipped[0][1]
    assert caplog.text.count("unusable image") == 1 and "under image_path=p" in caplog.text
    kept = [p for p in given if p != given[2]]
    assert [b.path_of(i) for i in range(b.num_images)] == kept
    x, y = all_images(b)
    assert identify(x) == [0, 1, 4, 3, 2] and y.tolist() == [0] * 5
    assert not os.path.exists(tmp_path / "p" / ".cspdarknet53_verified.jsonl")


def test_a_relative_data_folder_is_checked_and_read(tmp_path):
    make_tree("rel", (2, 3))               # relative to the working directory (the check's workers run elsewhere)
    b = create_dataset("rel", 32, 1, mode="eval", num_parallel_workers=1)
    assert b.skipped == [] and b.num_images == 5 and len(rows(b)) == 5
