"""The pipeline of docs/tutorials/walkthrough.md at a small size: landscape -> escape times -> rates -> table -> fit.

The page runs 1000 particles at 11 sharpness values (about 20 s on 2 cores); this runs 256 particles at 5
values of k (mean escape times ~3400 down to ~45 steps), a couple of seconds once compiled.
"""

import math

import jax
import numpy as np
import pandas as pd
import pytest

from escape.landscapes import StyblinskiTang
from escape.optim import make_optimizer
from escape.simulate import escape_times
from escape.stats import censored_rate, exponential_ks, fit_sharpness_exponent, RateEstimate

DIM = 5
N_PARTICLES = 256
LEARNING_RATE = 0.004
SHARPNESS = [1.25, 1.5, 2.0, 2.5, 3.0]
MAX_STEPS = 50_000
SEED = 0


@pytest.fixture(scope="module")
def pipeline():
    sgd = make_optimizer("sgd", learning_rate=LEARNING_RATE)
    results = {}
    for i, k in enumerate(SHARPNESS):
        land = StyblinskiTang(dim=DIM, sharpness=k, noise="data", n_data="fresh")
        results[k] = escape_times(land, sgd, batch_size=1, n_particles=N_PARTICLES, max_steps=MAX_STEPS,
                                  key=jax.random.fold_in(jax.random.key(SEED), i))
    estimates = {k: censored_rate(res) for k, res in results.items()}
    table = pd.DataFrame([{"sharpness": k, **estimates[k].to_dict(), "ks_pvalue": exponential_ks(res).pvalue}
                          for k, res in results.items()])
    return results, estimates, table


def test_table_rows_are_the_estimates(pipeline):
    results, estimates, table = pipeline
    fields = list(RateEstimate.__dataclass_fields__)
    assert list(table.columns) == ["sharpness", *fields, "ks_pvalue"]
    assert table["sharpness"].tolist() == SHARPNESS
    for k, row in zip(SHARPNESS, table.itertuples(index=False)):
        est = estimates[k]
        assert row.rate == est.rate and row.events == est.events
        assert row.events + row.censored + row.diverged == N_PARTICLES
        assert row.lower < row.rate < row.upper
        assert row.mean_time == pytest.approx(1 / row.rate)
        assert row.events == int(np.asarray(results[k].escaped).sum())


def test_sgd_escapes_faster_from_sharper_minima(pipeline):
    """At fixed eta, SGD on L_k runs at the effective rate eta k: the rate rises steeply with k (a factor 2-5
    between neighbouring cells here, against a 1/sqrt(256) = 6% error on each log rate)."""
    _, _, table = pipeline
    rates = table["rate"].to_numpy()
    assert np.all(np.diff(rates) > 0)
    # Disjoint intervals between neighbours, not just ordered points.
    assert np.all(table["upper"].to_numpy()[:-1] < table["lower"].to_numpy()[1:])
    # Every cell is inside the quasi-equilibrium window the page fits (50 .. 1e5 steps) except the hottest.
    assert table["mean_time"].between(50, 1e5).tolist() == [True, True, True, True, False]


def test_fit_from_table_matches_fit_from_estimates(pipeline):
    """The two input forms of fit_sharpness_exponent (RateEstimate objects; numbers with events=) agree, and
    the interval is a finite, ordered bracket that holds the exponent of the page's large run (0.82)."""
    _, estimates, table = pipeline
    fit = fit_sharpness_exponent(table["sharpness"], [estimates[k] for k in SHARPNESS], bootstrap=50, seed=0)
    again = fit_sharpness_exponent(table["sharpness"], table["rate"], events=table["events"])
    assert again.p_hat == pytest.approx(fit.p_hat, abs=1e-6)
    assert again.p_lower == pytest.approx(fit.p_lower, abs=1e-6)
    assert again.p_upper == pytest.approx(fit.p_upper, abs=1e-6)
    assert all(math.isfinite(v) for v in (fit.p_hat, fit.p_lower, fit.p_upper, fit.p_boot_lower, fit.p_boot_upper))
    assert fit.p_lower < fit.p_hat < fit.p_upper
    assert fit.p_boot_lower < fit.p_boot_upper and fit.n_boot == 50
    assert fit.n_points == len(SHARPNESS) and fit.excluded_k == ()
    assert fit.p_lower < 0.82 < fit.p_upper
    row = fit.to_dict()
    assert row["p_hat"] == fit.p_hat and row["n_points"] == len(SHARPNESS)
    fits = pd.DataFrame([row])
    assert fits.loc[0, "a_hat"] == fit.fit_hat.a
