"""Step-level measurements behind docs/convergence.md (no training run): each prints what it measured.

    python research/convergence_checks.py step      # loss scale 1024 vs 1, wd groups, wd/unscale order, the LR each step uses
    python research/convergence_checks.py bn        # BatchNorm moving-statistics update (momentum semantics), recompute on/off,
                                                 # eval between train steps
    python research/convergence_checks.py data DIR  # labels of shuffled train batches vs the files they came from;
                                                 # train vs eval normalisation (DIR: an ImageFolder train tree)
    python research/convergence_checks.py signal [ARCH ...]  # relative update size |g|/|w| per layer at init

All on ``cspdarknet_tiny`` (float32, CPU, GRAPH mode), batch 8 at 32 px, from fixed random inputs.
"""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


_READY = []


def _setup():
    import mindspore as ms
    if _READY:
        return ms
    from src.utils.runtime import setup_device
    from src.utils.perf import apply_cpu_performance_settings
    setup_device("CPU")
    apply_cpu_performance_settings(onednn_isa="auto")
    ms.set_seed(0)
    _READY.append(True)
    return ms


def _batch(n=8, size=32, seed=0):
    rng = np.random.RandomState(seed)
    return rng.normal(size=(n, 3, size, size)).astype(np.float32), rng.randint(0, 10, size=n).astype(np.int32)


def _params(net):
    return {p.name: p.asnumpy().copy() for p in net.trainable_params()}


def check_step():
    ms = _setup()
    from mindspore import nn, ops
    from src.image_classification import create_model
    from src.loss import create_loss
    from src.lr_generator import get_lr
    from src.train_step import TrainStep
    from src.utils.optimizers_init import create_optimizer, get_param_groups

    x, y = _batch()
    xt, yt = ms.Tensor(x), ms.Tensor(y)
    lr = get_lr("cosine_annealing", 0.05, steps_per_epoch=2, max_epoch=3, warmup_epochs=1, T_max=3)
    wd, mom, K = 1e-4, 0.9, 6
    results = {}
    for scale in (1024.0, 1.0):
        net = create_model("cspdarknet_tiny", 10, seed=0, init="zoo")
        loss_fn = create_loss(1, 0.1, 10)
        groups = get_param_groups(net)
        opt = create_optimizer(net, ms.Tensor(lr), momentum=mom, weight_decay=wd, loss_scale=scale)
        step = TrainStep(net, loss_fn, opt, loss_scale=scale)
        with_loss = nn.WithLossCell(net, loss_fn)
        grad_fn = ops.GradOperation(get_by_list=True)
        weights = net.trainable_params()
        names = [p.name for p in weights]
        decay_names = {p.name for p in groups[0]["params"]}
        w = _params(net)
        v = {n: np.zeros_like(a) for n, a in w.items()}
        traj, lrs_seen = [], []
        for k in range(K):
            # gradient at the current weights, unscaled, float32 (BN batch statistics: train mode)
            net.set_train(True)
            g = [t.asnumpy() for t in grad_fn(with_loss, ms.ParameterTuple(weights))(xt, yt)]
            before = _params(net)
            step(xt, yt)
            after = _params(net)
            # expected: MindSpore/PyTorch SGD momentum with coupled L2 on the decay group
            max_rel = 0.0
            for n, gi in zip(names, g):
                d = wd if n in decay_names else 0.0
                v[n] = mom * v[n] + gi + d * before[n]
                exp = before[n] - lr[k] * v[n]
                denom = np.abs(after[n] - before[n]).max() + 1e-30
                max_rel = max(max_rel, float(np.abs(after[n] - exp).max() / denom))
            # LR actually used, read off the head bias (no decay): delta = -lr * v
            b = "head.fc.bias"
            used = float(-np.dot(after[b] - before[b], v[b]) / np.dot(v[b], v[b]))  # least squares
            lrs_seen.append(used)
            traj.append(after)
        results[scale] = traj
        print(f"loss_scale {scale:g}: {len(decay_names)} decay params ({sorted(decay_names)[:2]} ...), "
              f"{len(names) - len(decay_names)} no-decay; global_step after {K} steps = "
              f"{int(opt.global_step.asnumpy().reshape(-1)[0])}")
        print(f"  max relative deviation of each step's update from the NumPy SGD-momentum + L2 rule: {max_rel:.2e}")
        print("  LR used per step (from the head bias update):", " ".join(f"{u:.6g}" for u in lrs_seen))
        print("  LR array get_lr                             :", " ".join(f"{u:.6g}" for u in lr[:K]))
    a, b = results[1024.0][-1], results[1.0][-1]
    diff = max(float(np.abs(a[n] - b[n]).max()) for n in a)
    print(f"after {K} steps, max |w(loss_scale 1024) - w(loss_scale 1)| = {diff:.3e}")


def check_bn():
    ms = _setup()
    from mindspore import nn, ops
    from src.image_classification import create_model
    from src.loss import create_loss
    from src.train_step import TrainStep
    from src.utils.optimizers_init import create_optimizer
    from src.utils.perf import recompute_activations

    x, y = _batch()
    xt, yt = ms.Tensor(x), ms.Tensor(y)
    out = {}
    for recompute in (False, True):
        net = create_model("cspdarknet_tiny", 10, seed=0, init="zoo")
        if recompute:
            recompute_activations(net)
        conv = net.backbone.stem.conv1.conv
        bn = net.backbone.stem.conv1.bn
        feat = conv(xt).asnumpy()  # stem conv output = the stem BN's input
        mean = feat.mean(axis=(0, 2, 3))
        var_b = feat.var(axis=(0, 2, 3))
        n = feat.shape[0] * feat.shape[2] * feat.shape[3]
        var_u = var_b * n / (n - 1)
        opt = create_optimizer(net, 0.0, momentum=0.9, weight_decay=0.0)
        step = TrainStep(net, create_loss(1, 0.1, 10), opt, loss_scale=1.0)
        losses = [float(step(xt, yt)[0].asnumpy())]
        mm, mv = bn.moving_mean.asnumpy(), bn.moving_variance.asnumpy()
        print(f"recompute={recompute}: after 1 step (lr 0) moving_mean / (batch mean) = "
              f"{np.median(mm / mean):.6f}; moving_var - 0.9 = {np.median((mv - 0.9) / var_u):.6f} x unbiased var "
              f"(= {np.median((mv - 0.9) / var_b):.6f} x biased var)")
        # an eval pass between steps must not touch the moving statistics nor the train-mode forward
        net.set_train(False)
        logits_eval = net(xt).asnumpy()
        net.set_train(True)
        mm2 = bn.moving_mean.asnumpy()
        losses.append(float(step(xt, yt)[0].asnumpy()))
        print(f"  eval pass changed moving_mean by {np.abs(mm2 - mm).max():.3e}; "
              f"train losses of two steps on the same batch (lr 0): {losses[0]:.7f} {losses[1]:.7f}")
        out[recompute] = (losses, _params(net))
    d = max(float(np.abs(out[False][1][k] - out[True][1][k]).max()) for k in out[False][1])
    print(f"recompute on vs off: losses {out[False][0]} vs {out[True][0]}, max weight diff {d:.3e}")


def check_data(train_dir):
    ms = _setup()
    from PIL import Image
    from src.config import load_config
    from src.data.pipeline import create_dataset_from_config
    import mindspore.dataset as ds

    cfg = load_config(["--data_dir=" + train_dir, "--image_size=32,32", "--per_batch_size=32", "--num_classes=10",
                       "--crop_scale_min=1.0", "--color_jitter=0.0"])
    pre = dict(seed=cfg.device.seed, num_classes=10, image_size="32,32", eval_resize="squash", crop_pct=0.875)
    bundle = create_dataset_from_config(cfg.data, "train", **pre)
    ev = create_dataset_from_config(cfg.data, "eval", data_dir=train_dir, class_to_idx=bundle.class_to_idx, **pre)
    # reference: every file decoded, resized to 32x32 and normalised like the pipelines (ImageNet mean/std)
    mean = np.array([0.485, 0.456, 0.406]) * 255
    std = np.array([0.229, 0.224, 0.225]) * 255
    files, labels = [], []
    for cls, idx in sorted(bundle.class_to_idx.items(), key=lambda t: t[1]):
        for f in sorted(os.listdir(os.path.join(train_dir, cls))):
            files.append(os.path.join(train_dir, cls, f))
            labels.append(idx)
    labels = np.array(labels)
    ref = np.stack([((np.asarray(Image.open(f).convert("RGB").resize((32, 32), Image.BILINEAR), np.float64) - mean)
                     / std).transpose(2, 0, 1) for f in files]).astype(np.float32)
    ref_f = ref[:, :, :, ::-1]
    flat, flat_f = ref.reshape(len(ref), -1), ref_f.reshape(len(ref), -1)
    ds.config.set_seed(1)
    ok = total = 0
    gaps = []
    stats = []
    for bi, (img, lab) in enumerate(bundle.dataset.create_tuple_iterator(num_epochs=1)):
        img, lab = img.asnumpy(), lab.asnumpy()
        stats.append(img.reshape(img.shape[0], 3, -1).transpose(1, 0, 2).reshape(3, -1))
        if bi < 5:
            q = img.reshape(len(img), -1)
            d = np.minimum(((q[:, None] - flat[None]) ** 2).mean(-1), ((q[:, None] - flat_f[None]) ** 2).mean(-1))
            nn_idx = d.argmin(1)
            srt = np.sort(d, 1)
            gaps.append(float(np.median(srt[:, 1] / np.maximum(srt[:, 0], 1e-12))))
            ok += int((labels[nn_idx] == lab).sum())
            total += len(lab)
    tr = np.concatenate(stats, 1)
    evs = np.concatenate([i.asnumpy().reshape(i.shape[0], 3, -1).transpose(1, 0, 2).reshape(3, -1)
                          for i, _ in ev.dataset.create_tuple_iterator(num_epochs=1)], 1)
    print(f"data: {total} shuffled train images (5 batches, crops at scale 1, no jitter): label == label of the nearest "
          f"file (flip-invariant): {ok}/{total}; median 2nd/1st nearest distance ratio {np.median(gaps):.1f}")
    print("  train pipeline per-channel mean/std:", np.round(tr.mean(1), 3), np.round(tr.std(1), 3))
    print("  eval  pipeline per-channel mean/std:", np.round(evs.mean(1), 3), np.round(evs.std(1), 3))
    print("  files (NumPy reference)    mean/std:", np.round(ref.transpose(1, 0, 2, 3).reshape(3, -1).mean(1), 3),
          np.round(ref.transpose(1, 0, 2, 3).reshape(3, -1).std(1), 3))


def check_signal(arch="cspdarknet53"):
    """Forward/backward statistics of the freshly initialised network, zoo vs timm init, on one random batch
    of 32 images at 32 px (train-mode BN): std of each stage's output and of the logits, and the relative
    gradient size ||g|| / ||w|| of the conv weights (what one SGD step at lr changes: lr * ||g|| / ||w||)."""
    ms = _setup()
    from mindspore import nn, ops
    from src.image_classification import create_model
    from src.loss import create_loss

    x, y = _batch(32, 32, seed=1)
    xt, yt = ms.Tensor(x), ms.Tensor(y)
    for init in ("zoo", "timm"):
        net = create_model(arch, 10, seed=1, init=init)
        net.set_train(True)
        feats = [f.asnumpy() for f in net.feature_maps(xt)]
        logits = net(xt).asnumpy()
        with_loss = nn.WithLossCell(net, create_loss(1, 0.1, 10))
        weights = [p for p in net.trainable_params() if p.name.endswith("conv.weight")]
        grads = ops.GradOperation(get_by_list=True)(with_loss, ms.ParameterTuple(weights))(xt, yt)
        rel = np.array([np.linalg.norm(g.asnumpy()) / np.linalg.norm(w.asnumpy()) for g, w in zip(grads, weights)])
        wn = np.array([np.linalg.norm(w.asnumpy()) for w in weights])
        print(f"{arch} init={init}: stage output std " + " ".join(f"{f.std():.3g}" for f in feats)
              + f"; logits std {logits.std():.3g}; loss {float(with_loss(xt, yt).asnumpy()):.4f}")
        print(f"  conv weights: ||w|| median {np.median(wn):.3g}; ||g||/||w|| median {np.median(rel):.3g}, "
              f"max {rel.max():.3g}, sum over layers {rel.sum():.3g}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "signal":
        for a in sys.argv[2:] or ["cspdarknet53"]:
            check_signal(a)
        sys.exit(0)
    what = sys.argv[1] if len(sys.argv) > 1 else "step"
    if what == "data" and len(sys.argv) == 3 and os.path.isdir(sys.argv[2]):
        check_data(sys.argv[2])
    elif what in ("step", "bn") and len(sys.argv) <= 2:
        {"step": check_step, "bn": check_bn}[what]()
    else:
        sys.exit("usage: python research/convergence_checks.py step | bn | data DIR | signal [ARCH ...]")
