"""The saddle experiment (issue 3, acceptance 3) at a small size, and what theory §5 predicts (docs/theory.md)."""

import numpy as np
import pandas as pd
import pytest

from escape import theory
from escape.experiments import apply_overrides, load_config, run_experiment


@pytest.fixture(scope="module")
def saddle(tmp_path_factory):
    out = tmp_path_factory.mktemp("saddle")
    cfg = apply_overrides(load_config("saddle"), ["preset=small"])
    run_experiment(cfg, out, progress=False)
    return cfg, out, pd.read_csv(out / "results.csv"), pd.read_csv(out / "table.csv")


def _msd(results, label, method, T):
    s = results[(results.optimizer == label) & (results.method == method) & (results["T"] == T)].sort_values("abs_hessian")
    return s["abs_hessian"].to_numpy(), s["msd"].to_numpy()


def test_outputs_and_resume(saddle):
    cfg, out, results, table = saddle
    for label in cfg["optimizers"]:
        assert (out / f"saddle_{label}.png").exists()
    n_cells = len(cfg["optimizers"]) * len(cfg["run"]["methods"])
    assert (out / "manifest.json").exists() and len(list((out / "cells").glob("*.npz"))) == n_cells == 12
    assert set(table["T"]) == {100, 300}
    before = (out / "results.csv").read_text()
    run_experiment(cfg, out, progress=False)  # every cell is done: nothing reruns, same results
    assert (out / "results.csv").read_text() == before


def test_sgd_msd_proportional_to_h(saddle):
    # Theorem 1 with D = eta |H| / 2B: MSD = (eta / 2B)(exp(2 |H| eta T) - 1) ~= eta^2 |H| T / B while
    # 2 |H| eta T << 1, so log MSD vs log |H| has slope 1 at small |H|, and over the range the ratio is
    # (exp(2 eta T) - 1) / (exp(2e-3 eta T) - 1): 1107 at T = 100 (eta = 1e-3), i.e. |H| ratio 1000 x 1.107.
    _, _, results, _ = saddle
    for method in ("discrete", "sde"):
        h, m = _msd(results, "sgd", method, 100)
        slope = np.polyfit(np.log(h[:4]), np.log(m[:4]), 1)[0]
        assert abs(slope - 1) < 0.15, (method, slope)
        _, th = _msd(results, "sgd", "theory", 100)
        assert 1000 / 1.3 < m[-1] / m[0] < 1107 * 1.3, (method, m[-1] / m[0])
        np.testing.assert_allclose(m, th, rtol=0.15)


def test_adam_msd_independent_of_h(saddle):
    _, _, results, _ = saddle
    for method in ("discrete", "sde", "theory"):
        for T in (100, 300):
            _, m = _msd(results, "adam", method, T)
            assert m.max() / m.min() < 3, (method, T, m.max() / m.min())


def test_momentum_short_time_ballistic(saddle):
    # After release the velocity is thermal: MSD ~ eta^2 Var(m) T^2 for T << 1 / (1 - beta) = 10; the
    # drift term of Theorem 2 (Var m = C / (1 - beta^2) on the discrete recursion, C / (2 (1 - beta)) in
    # the model).
    _, _, results, _ = saddle
    for method in ("discrete", "sde"):
        for i in range(7):
            m1 = _msd(results, "momentum", method, 1)[1][i]
            m3 = _msd(results, "momentum", method, 3)[1][i]
            slope = np.log(m3 / m1) / np.log(3)
            assert 1.7 < slope < 2.3, (method, i, slope)
    h, m1 = _msd(results, "momentum", "discrete", 1)
    eta, beta = 1e-4, 0.9
    np.testing.assert_allclose(m1, eta**2 * h / (1 - beta**2), rtol=0.2)


def test_adai_what_prop3_predicts(saddle):
    # Prop. 3: the drift amplitude T_eff M_i = (eta C_i / 2)(eta v_bar / (beta0 v_i)) = eta^2 v_bar / (2 beta0)
    # is independent of |H_i| wherever beta0 v_i / v_bar >= eps (no clip). The TOTAL MSD is not: its
    # diffusion term is SGD's (gamma = 1, D = eta |H| / 2B), so at fixed T it grows ~ |H| like SGD's; with
    # the clip at eps the drift term of the smallest |H| is cut too. Measured: ~1e3 over [1e-3, 1].
    cfg, _, results, _ = saddle
    h = np.array(cfg["landscape"]["abs_hessian"])
    eta, beta0, eps = 1e-3, 0.1, 1e-3
    m, gam = theory.adai_coefficients(eta, h, beta0=beta0, eps=eps)
    amplitude = (eta * h / 2 / gam) * m / gam**2
    free = beta0 * h / h.mean() >= eps
    assert free.sum() >= 5
    np.testing.assert_allclose(amplitude[free], eta**2 * h.mean() / (2 * beta0), rtol=1e-12)
    for method in ("discrete", "theory"):
        _, m100 = _msd(results, "adai", method, 100)
        assert m100[-1] / m100[0] > 100, method  # NOT within 3x: the expectation fails (see docs)
    # where inertia is short (large |H|) discrete, SDE and Prop. 3 agree
    for method in ("discrete", "sde"):
        _, m = _msd(results, "adai", method, 100)
        _, th = _msd(results, "adai", "theory", 100)
        np.testing.assert_allclose(m[-2:], th[-2:], rtol=0.3)


def test_improved_models_follow_the_optimizers_where_the_papers_adai_closure_does_not(saddle):
    # The stochastic closure (bias corrections, stochastic v, momentum form) keeps Adam's and Adai's MSD within
    # a factor 2 of the optimizer at every |H| and T >= 10 (1000 particles: each MSD has a ~5% standard error);
    # the papers' quasi-static Adai model misses the small-|H| directions by more than 10x.
    _, _, results, _ = saddle
    for label in ("adam", "adai"):
        for T in (10, 30, 100, 300):
            _, disc = _msd(results, label, "discrete", T)
            _, improved = _msd(results, label, "sde-improved", T)
            ratio = improved / disc
            assert np.all((ratio > 0.5) & (ratio < 2.0)), (label, T, ratio)
    _, disc = _msd(results, "adai", "discrete", 10)
    _, paper = _msd(results, "adai", "sde", 10)
    assert paper[0] / disc[0] < 0.1
