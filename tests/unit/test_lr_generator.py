import math

import numpy as np
import pytest

from src.lr_generator import SCHEDULERS, get_lr, get_lr_from_config

# zoo README/reference table: lr 0.1, 8p (2502 steps/epoch), 150 epochs, warmup 5, T_max 150
# (step, value as printed, significant digits printed)
ZOO_TABLE = [
    (0, 7.994e-6, 4),
    (2501, 0.02, 6),
    (12509, 0.1, 6),
    (12510, 0.0997261, 6),
    (25020, 0.0989074, 6),
    (187650, 0.05, 6),
    (372798, 1.0966e-5, 5),
    (375299, 1.0966e-5, 5),
]


def test_zoo_cosine_annealing_table():
    lr = get_lr("cosine_annealing", 0.1, 2502, 150, warmup_epochs=5, T_max=150)
    assert lr.dtype == np.float32 and lr.shape == (150 * 2502,)
    for step, ref, digits in ZOO_TABLE:
        assert float(f"{float(lr[step]):.{digits}g}") == ref, (step, lr[step], ref)
    assert lr[0] == np.float32(0.1 / 12510)
    # the whole last epoch is one constant stair, above eta_min
    last = lr[372798:]
    assert len(last) == 2502 and np.all(last == last[0]) and last[0] > 0
    # staircase: constant within each post-warmup epoch
    assert np.all(lr[12510:15012] == lr[12510])


def test_warmup_is_linear_from_lr_over_n():
    lr = get_lr("cosine_annealing", 0.4, 10, 4, warmup_epochs=2)
    np.testing.assert_allclose(lr[:20], 0.4 * np.arange(1, 21) / 20, rtol=1e-6)


def test_fractional_warmup():
    # 0.5 * 10 = 5 warmup steps
    lr = get_lr("multistep", 1.0, 10, 3, warmup_epochs=0.5, lr_epochs=[1, 2])
    np.testing.assert_allclose(lr[:5], [0.2, 0.4, 0.6, 0.8, 1.0], rtol=1e-6)
    assert np.all(lr[5:10] == 1.0)
    # 0.25 * 10 = 2.5 -> int -> 2 warmup steps
    lr = get_lr("cosine_step", 1.0, 10, 2, warmup_epochs=0.25)
    np.testing.assert_allclose(lr[:2], [0.5, 1.0], rtol=1e-6)
    assert lr[2] == 1.0


@pytest.mark.parametrize("name", ["exponential", "multistep"])
def test_multistep_milestones(name):
    spe = 7
    lr = get_lr(name, 0.1, spe, 150, warmup_epochs=5, lr_epochs="30,60,90,120", lr_gamma=0.1)
    expect = {0: 0.1, 30: 0.01, 60: 1e-3, 90: 1e-4, 120: 1e-5}
    for start, value in expect.items():
        if start:
            assert math.isclose(lr[start * spe - 1], value * 10, rel_tol=1e-6)
        assert math.isclose(lr[max(start, 5) * spe], value, rel_tol=1e-6)
    assert math.isclose(lr[-1], 1e-5, rel_tol=1e-6)
    # same for a list and the alias
    np.testing.assert_array_equal(lr, get_lr("multistep", 0.1, spe, 150, 5, (30, 60, 90, 120), 0.1))


def test_multistep_repeated_milestone_multiplies_twice():
    lr = get_lr("exponential", 1.0, 2, 4, lr_epochs=[2, 2], lr_gamma=0.5)
    np.testing.assert_allclose(lr, [1, 1, 1, 1, 0.25, 0.25, 0.25, 0.25])


def test_cosine_step_endpoints():
    lr = get_lr("cosine_step", 0.1, 10, 20, warmup_epochs=2, eta_min=1e-4)
    assert len(lr) == 200
    assert math.isclose(lr[19], 0.1, rel_tol=1e-6)       # end of warmup
    assert math.isclose(lr[20], 0.1, rel_tol=1e-6)       # cosine starts at lr
    assert math.isclose(lr[-1], 1e-4, rel_tol=1e-6)      # reaches eta_min at the last step
    mid = 20 + (199 - 20) / 2
    assert math.isclose(lr[int(mid)], 1e-4 + (0.1 - 1e-4) * (1 + math.cos(math.pi * (int(mid) - 20) / 179)) / 2,
                        rel_tol=1e-5)
    assert np.all(np.diff(lr[20:]) <= 0)                 # smooth, monotone decay
    assert len(np.unique(lr[20:30])) == 10               # per step, not a staircase
    # no warmup
    lr0 = get_lr("cosine_step", 0.1, 5, 2)
    assert lr0[0] == np.float32(0.1) and math.isclose(lr0[-1], 0.0, abs_tol=1e-12)


def test_cosine_annealing_eta_min_and_default_tmax():
    lr = get_lr("cosine_annealing", 1.0, 1, 4, eta_min=0.5)
    np.testing.assert_allclose(lr, [0.5 + 0.5 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)], rtol=1e-6)


def test_warmup_longer_than_training():
    lr = get_lr("cosine_annealing", 1.0, 2, 2, warmup_epochs=4)
    np.testing.assert_allclose(lr, [1 / 8, 2 / 8, 3 / 8, 4 / 8])


def test_unknown_scheduler_error_names_it_and_valid_ones():
    with pytest.raises(ValueError) as err:
        get_lr("polynomial", 0.1, 10, 2)
    msg = str(err.value)
    assert "polynomial" in msg
    for name in SCHEDULERS:
        assert name in msg


@pytest.mark.parametrize("kwargs", [dict(steps_per_epoch=0), dict(max_epoch=0), dict(lr=-1.0),
                                    dict(warmup_epochs=-1)])
def test_bad_arguments(kwargs):
    args = dict(lr_scheduler="cosine_annealing", lr=0.1, steps_per_epoch=10, max_epoch=2)
    args.update(kwargs)
    with pytest.raises(ValueError):
        get_lr(**args)


def test_from_config_and_t_max_follows_max_epoch():
    from src.config import load_config

    optim = load_config([]).optim  # the zoo recipe: T_max 0 means max_epoch (150)
    np.testing.assert_array_equal(get_lr_from_config(optim, 2502),
                                  get_lr("cosine_annealing", 0.1, 2502, 150, 5, T_max=150))
    short = load_config(["--max_epoch=8", "--warmup_epochs=1"]).optim  # a short run decays over its own length
    lr = get_lr_from_config(short, 10)
    np.testing.assert_array_equal(lr, get_lr("cosine_annealing", 0.1, 10, 8, 1, T_max=8))
    assert lr[-1] < 0.05 * lr.max()  # the zoo staircase: the last epoch sits at (1 + cos(7 pi / 8)) / 2 of the peak
    d = load_config(["--lr_scheduler=exponential", "--lr=0.2", "--max_epoch=4", "--warmup_epochs=0",
                     "--lr_epochs=2", "--lr_gamma=0.5"]).optim
    np.testing.assert_allclose(get_lr_from_config(d, 1), [0.2, 0.2, 0.1, 0.1])
