"""Per-step host overhead of the training loop (src.trainer.train_one_epoch) against sink mode (src.sink), on CPU.

    python research/loop_overhead.py [--arch micro|cspdarknet_tiny] [--img 32] [--batch 8]
        [--steps 200] [--sink_size 20] [--ema 1]

Runs the same compiled step (src.train_step.TrainStep, + WeightEMA) on batches from an in-memory
``NumpySlicesDataset`` three ways, each after a warm-up epoch, and prints wall and CPU ms per step:

* ``bare``: the step graph on pre-fetched tensors, no host reads until the end (the compute alone);
* ``loop``: what ``train_one_epoch`` does per step: next batch from the iterator, the step, the EMA update
  as a second graph call, ``float(loss.asnumpy())`` and ``bool(overflow.asnumpy())``;
* ``sink``: ``src.sink``'s host feed: the batches go into ``SinkStep`` (step + EMA + records in one
  graph) and the host reads the records once per ``sink_size`` steps.

``--arch micro`` is a one-layer network (a 1x1 conv and a dense head on 8x8 inputs), whose compute is
next to nothing, so its per-step time is the host overhead itself.
"""
import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("GLOG_v", "3")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="micro")
    p.add_argument("--img", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--sink_size", type=int, default=20)
    p.add_argument("--ema", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()

    import numpy as np
    import mindspore as ms
    import mindspore.dataset as ds
    from mindspore import nn, ops

    from src.loss import CrossEntropySmooth
    from src.train_step import SinkStep, TrainStep, WeightEMA
    from src.utils.optimizers_init import create_optimizer
    from src.utils.perf import apply_cpu_performance_settings
    from src.utils.runtime import setup_device

    setup_device("CPU", graph_mode=True)
    apply_cpu_performance_settings(threads=a.threads)
    classes = 10
    if a.arch == "micro":
        class Micro(nn.Cell):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 1, has_bias=False)
                self.fc = nn.Dense(8, classes)

            def construct(self, x):
                return self.fc(ops.mean(self.conv(x), (2, 3)))
        net, img = Micro(), 8
    else:
        from src.image_classification import create_model
        net, img = create_model(a.arch, num_classes=classes), a.img
    rng = np.random.default_rng(0)
    n = a.steps * a.batch
    images = rng.standard_normal((n, 3, img, img)).astype(np.float32)
    labels = rng.integers(0, classes, size=(n,)).astype(np.int32)
    dataset = ds.NumpySlicesDataset({"image": images, "label": labels}, shuffle=False).batch(a.batch)
    opt = create_optimizer(net, ms.Tensor(np.full((4 + 3 * a.repeats) * a.steps, 1e-3, np.float32)), momentum=0.9,
                           weight_decay=1e-4, loss_scale=1024.0)
    step = TrainStep(net, CrossEntropySmooth(smooth_factor=0.1, num_classes=classes), opt, loss_scale=1024.0)
    ema = WeightEMA(net, 0.999) if a.ema else None
    sink = SinkStep(step, ema, a.sink_size)
    sink.set_train(True)
    batches = list(dataset.create_tuple_iterator(num_epochs=1))

    def bare():
        out = None
        for x, y in batches:
            out = step(x, y)
            if ema is not None:
                ema()
        out[0].asnumpy()

    def loop():
        for x, y in dataset.create_tuple_iterator(num_epochs=1):
            loss, overflow, scale = step(x, y)
            if ema is not None:
                ema()
            float(loss.asnumpy())
            bool(overflow.asnumpy())

    def sunk():
        it = dataset.create_tuple_iterator(num_epochs=1)
        for _ in range(0, a.steps, a.sink_size):
            sink.reset_records()
            for _ in range(a.sink_size):
                x, y = next(it)
                sink(x, y)
            sink.read_records(a.sink_size)

    results = {k: [] for k in ("bare", "loop", "sink")}
    for fn in (bare, loop, sunk):  # compile + warm up
        fn()
    for _ in range(a.repeats):
        for name, fn in (("bare", bare), ("loop", loop), ("sink", sunk)):
            t, c = time.perf_counter(), time.process_time()
            fn()
            results[name].append(((time.perf_counter() - t) / a.steps, (time.process_time() - c) / a.steps))
    print(f"{a.arch} {img}px bs {a.batch}, {a.steps} steps x {a.repeats}, EMA {'on' if a.ema else 'off'}, sink_size "
          f"{a.sink_size}, {a.threads} kernel thread(s); load {os.getloadavg()[0]:.2f}")
    base = statistics.median(w for w, _ in results["bare"])
    for name, vals in results.items():
        w = statistics.median(v for v, _ in vals)
        c = statistics.median(v for _, v in vals)
        print(f"{name:5s} {1e3 * w:8.3f} ms/step wall  {1e3 * c:8.3f} ms/step CPU  "
              f"(+{1e3 * (w - base):.3f} ms over bare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
