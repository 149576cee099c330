"""EvalAccumulator.all_reduce on 2 real msrun CPU ranks: the summed confusion matrix, top-5 hits and the
gathered most-confident mistakes equal those of one process over the whole set (10 and 1000 classes).

Each rank holds src.data's interleaved eval shard (rank r: samples r, r+2, ...) of the same
deterministic logits and reduces through src.analysis.metrics.SumAcrossRanks (float32 AllReduce), as eval.py
will. One 2-rank start costs about 25-45 s on a 2-core machine, so there is one run.
"""
import json
import os
import shutil
import socket
import sys

import numpy as np
import pytest

HERE = os.path.abspath(__file__)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
CASES = ((10, 203, 8), (1000, 450, 16))  # (classes, images, worst_n)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("bash") is None,
                                reason="msrun workers need Linux")


def _data(k, n, seed):
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, k, n)
    logits = np.round(rng.randn(n, k), 2).astype(np.float32)
    logits[np.arange(n), labels] += 1.5
    return logits, labels


def _feed(acc, logits, labels, batch=32):
    for s in range(0, labels.size, batch):
        acc.update(logits[s:s + batch], labels[s:s + batch])
    return acc


def _worker(out_dir):
    from src.analysis.metrics import EvalAccumulator
    from src.utils.runtime import init_distributed, setup_device

    setup_device("CPU")
    rank, group = init_distributed(True)
    report = {"rank": rank, "group_size": group, "cases": []}
    for k, n, worst in CASES:
        logits, labels = _data(k, n, seed=k)
        whole = _feed(EvalAccumulator(k, worst_n=worst), logits, labels)
        mine = np.arange(rank, n, group)
        acc = _feed(EvalAccumulator(k, worst_n=worst, index_offset=rank, index_stride=group),
                    logits[mine], labels[mine])
        local_total = acc.total
        acc.all_reduce(rank, group)
        report["cases"].append({
            "classes": k, "local_images": local_total, "images": acc.total,
            "matrix_equal": bool(np.array_equal(acc.matrix, whole.matrix)),
            "topk_equal": bool(np.array_equal(acc.topk_hits, whole.topk_hits)),
            "mistakes": [[m.index, m.true, m.predicted] for m in acc.worst_mistakes()],
            "mistakes_whole": [[m.index, m.true, m.predicted] for m in whole.worst_mistakes()],
            "confidence_err": float(np.max(np.abs(np.array([m.confidence for m in acc.worst_mistakes()]) -
                                                  np.array([m.confidence for m in whole.worst_mistakes()])))),
        })
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(report, f)


def test_all_reduce_on_two_msrun_ranks_equals_one_process(tmp_path, run_script):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = tmp_path / ".bin"  # msrun starts workers as `python <script>` from PATH
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    cmd = [sys.executable, "-m", "mindspore.parallel.cluster.run", "--worker_num=2", "--local_worker_num=2",
           "--master_addr=127.0.0.1", f"--master_port={port}", f"--log_dir={tmp_path / 'msrun_log'}",
           "--join=True", "--cluster_time_out=120", HERE, str(tmp_path)]
    proc = run_script.cmd(cmd, cwd=tmp_path, env={"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
                          timeout=400)
    logs = "".join(open(p, errors="replace").read()[-3000:] for p in sorted((tmp_path / "msrun_log").glob("*.log")))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + logs
    for rank in (0, 1):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert report["group_size"] == 2
        for case, (k, n, worst) in zip(report["cases"], CASES):
            assert case["local_images"] == len(range(rank, n, 2)) and case["images"] == n
            assert case["matrix_equal"] and case["topk_equal"], case["classes"]
            assert case["mistakes"] == case["mistakes_whole"] and len(case["mistakes"]) == worst
            assert case["confidence_err"] < 1e-6  # confidences went through float32


def test_all_reduce_single_process_is_a_no_op():
    from src.analysis.metrics import EvalAccumulator

    logits, labels = _data(5, 40, seed=0)
    acc = _feed(EvalAccumulator(5, worst_n=3), logits, labels)
    before = acc.matrix.copy()
    assert acc.all_reduce(0, 1) is acc and np.array_equal(acc.matrix, before)
    # With a fake two-rank reducer (the other rank all zeros) the totals are unchanged too.
    acc.all_reduce(0, 2, reducer=lambda v: np.asarray(v, np.float32).astype(np.float64))
    assert np.array_equal(acc.matrix, before) and len(acc.worst_mistakes()) == 3
    with pytest.raises(ValueError, match="returned"):
        acc.all_reduce(0, 2, reducer=lambda v: v[:-1])


if __name__ == "__main__":  # an msrun worker (PYTHONPATH holds the repository)
    _worker(sys.argv[1])
