"""The gradient-noise experiment (Adai paper, Fig. 1 and App. C): minibatch gradient noise against the Hessian.

A small fully connected tanh network on digits (cross-entropy, one example at a time) at two points: its
random initialisation and after ``train.steps`` full-batch steps. At each point: the top ``run.top_k`` and the
bottom ``run.bottom_k`` (most negative) Hessian eigenpairs by Lanczos; the per-sample gradients (``vmap`` of
``grad``) projected on them, giving ``v_i' C_1 v_i`` against ``lambda_i`` (``C_1`` the per-sample covariance;
a minibatch of ``B`` has ``C_1 / B``, and the claim is ``C_1 ~= H``); for a model of at most
``run.dense_max`` parameters, the dense ``H`` and ``C_1`` as a check. Beside it, App. C's question: per
eigendirection, is the minibatch noise ``v . (g_B - g)`` Gaussian as ``B`` grows from 1 (D'Agostino-Pearson
normality test, excess kurtosis, Hill tail index)?

Outputs: ``eigen.csv`` (one row per point and eigenpair), ``noise.csv`` (per point and |lambda| band: the
correlation and log-log slope of ``v' C_1 v`` against ``|lambda|``, and their median ratio),
``gaussianity.csv`` (per point and batch size), ``noise.png``, ``manifest.json``; one cell per point.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import scipy.stats

from ..curvature import hessian_eigenpairs, spectral_density
from ..curvature._noise import dense_noise_covariance, hill_tail_index, minibatch_noise, per_sample_projections
from ..stability import train_full_batch
from ._aeos import init_params, load_data, mlp_section, tanh_mlp
from ._cells import run_cells
from ._config import ConfigError
from ._io import atomic_write_text, finished_cells, read_table
from ._schema import Integer, Key, ListOf, Number, OptionalSection, Schema, Section, String, UNSET, seed_key

POINTS = ("init", "trained")

SCHEMA = Schema(
    "noise",
    "Gradient noise against the Hessian (Adai paper Fig. 1, App. C): v' C v against the Hessian eigenvalues "
    "at initialisation and after training, and whether minibatch noise is Gaussian as the batch grows; "
    "`eigen.csv`, `noise.csv`, `gaussianity.csv`, `noise.png`. Tutorial: [gradient noise](tutorials/noise.md).",
    Section(
        {"seed": seed_key()},
        sections={
            "data": OptionalSection({
                "name": Key(String(("digits",)), "digits", "the data set (inputs standardised per feature)"),
                "n_examples": Key(Integer(min=10), UNSET, "first n training examples (default: all)"),
            }, "The training set."),
            "model": mlp_section(32, 1, "cross-entropy"),
            "train": OptionalSection({
                "learning_rate": Key(Number(gt=0), 0.01, "full-batch Adam's learning rate to the trained point"),
                "steps": Key(Integer(min=1), 1000, "full-batch Adam steps to the trained point"),
            }, "How the trained point is reached."),
            "run": OptionalSection({
                "top_k": Key(Integer(min=1), 30, "largest Hessian eigenvalues"),
                "bottom_k": Key(Integer(min=0), 10, "most negative Hessian eigenvalues"),
                "lanczos_iters": Key(Integer(min=2), 120, "Lanczos steps per solve"),
                "batch_sizes": Key(ListOf(Integer(min=1), "integers >= 1", increasing=True), [1, 4, 16, 64, 256],
                                   "batch sizes of the Gaussianity test"),
                "n_batches": Key(Integer(min=20), 4000, "minibatches drawn per batch size"),
                "gauss_k": Key(Integer(min=1), 5, "top eigendirections of the Gaussianity test"),
                "bands": Key(Integer(min=1), 3, "|lambda| bands of noise.csv (equal counts, by |lambda|)"),
                "dense_max": Key(Integer(min=0), 5000, "largest model checked against dense H and C"),
                "slq_iters": Key(Integer(min=2), 60, "Lanczos steps per probe of the spectral density"),
                "slq_probes": Key(Integer(min=1), 4, "probes of the spectral density (stochastic Lanczos quadrature)"),
                "chunk_size": Key(Integer(min=1), 256, "examples per per-sample-gradient chunk"),
            }, "What is measured at each point."),
        },
    ),
)


def validate(config: dict) -> None:
    run = config["run"]
    if run["top_k"] + run["bottom_k"] > run["lanczos_iters"]:
        raise ConfigError("config: run.top_k + run.bottom_k must not exceed run.lanczos_iters")
    if run["gauss_k"] > run["top_k"]:
        raise ConfigError("config: run.gauss_k must not exceed run.top_k")


def _problem(config):
    x, y = load_data({"data": config["data"]})
    labels = jnp.argmax(y, axis=1)
    sizes = (x.shape[1], *[config["model"]["width"]] * config["model"]["depth"], y.shape[1])
    params = init_params(jax.random.key(int(config["seed"])), sizes)

    def per_example(p, ex):
        xe, ye = ex
        return optax.softmax_cross_entropy_with_integer_labels(tanh_mlp(p, xe[None, :]), ye[None])[0]

    def full(p):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(tanh_mlp(p, x), labels))

    return params, per_example, full, (x, labels)


def run_point(config: dict, point: str) -> dict:
    """Eigenpairs, projections, checks and Gaussianity at one point (``init`` or ``trained``)."""
    run = config["run"]
    params, per_example, full, data = _problem(config)
    if point == "trained":
        params, _, _ = train_full_batch(full, params, optax.adam(config["train"]["learning_rate"]),
                                        config["train"]["steps"])
    key = jax.random.key(int(config["seed"]))
    top = hessian_eigenpairs(full, params, k=run["top_k"], key=key, num_iters=run["lanczos_iters"])
    values, basis = list(top.eigenvalues), [np.asarray(top.basis)]
    if run["bottom_k"]:
        bottom = hessian_eigenpairs(lambda p: -full(p), params, k=run["bottom_k"], key=jax.random.fold_in(key, 1),
                                    num_iters=run["lanczos_iters"])
        values += list(-bottom.eigenvalues)
        basis.append(np.asarray(bottom.basis))
    v = np.concatenate(basis)
    proj = per_sample_projections(per_example, params, data, v, chunk_size=run["chunk_size"])
    d = int(v.shape[1])
    dense = np.full(len(values), np.nan)
    dense_h = np.full(len(values), np.nan)
    if d <= run["dense_max"]:
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        c = dense_noise_covariance(per_example, params, data)
        h = np.asarray(jax.hessian(lambda f: full(unravel(f)))(flat), np.float64)
        dense = np.einsum("id,de,ie->i", v, c, v)
        dense_h = np.einsum("id,de,ie->i", v, h, v)
    gauss = []
    for b in run["batch_sizes"]:
        noise = minibatch_noise(proj.projections[:, : run["gauss_k"]], b, run["n_batches"], seed=int(config["seed"]))
        for i in range(run["gauss_k"]):
            z = noise[:, i]
            gauss.append((b, i, float(scipy.stats.normaltest(z).pvalue), float(scipy.stats.kurtosis(z)),
                          hill_tail_index(z)))
    density = spectral_density(full, params, key=jax.random.fold_in(key, 2), num_iters=run["slq_iters"],
                               num_probes=run["slq_probes"])
    return {"lambda": np.asarray(values), "vcv": proj.covariance_diag, "mean": proj.mean, "vcv_dense": dense,
            "vhv_dense": dense_h, "dim": d, "loss": float(full(params)), "gauss": np.asarray(gauss),
            "slq_nodes": density.nodes, "slq_weights": density.weights}


def run(config: dict, out: Path, *, progress: str = "bar") -> pd.DataFrame:
    """Run (or resume) both points of a resolved config, then write the tables and the figure."""

    def summary(point: str, cell: dict) -> str:  # the tables so far, and this point's bands
        bands = write_results(config, Path(out))
        rows = bands[bands["point"] == point]
        return (f"{point}: loss {cell['loss']:.3g}; median v'C_1v / |lambda| by band "
                + ", ".join(f"{r.ratio_median:.3g}" for r in rows.itertuples()))

    return run_cells(__name__, config, out, list(POINTS), run_point, progress=progress, summary=summary, unit="point")


def write_results(config: dict, out: Path) -> pd.DataFrame:
    """eigen.csv, noise.csv (per band) and gaussianity.csv from the finished points; returns noise.csv's table."""
    out = Path(out)
    eig, bands, gauss = [], [], []
    for point, c in finished_cells(out, POINTS):
        lam, vcv = c["lambda"], c["vcv"]
        for i in range(lam.size):
            eig.append({"point": point, "index": i, "lambda": lam[i], "sign": int(np.sign(lam[i])), "vCv": vcv[i],
                        "vCv_dense": c["vcv_dense"][i], "vHv_dense": c["vhv_dense"][i], "ratio": vcv[i] / abs(lam[i]),
                        "gradient_projection": c["mean"][i], "dim": int(c["dim"]), "loss": float(c["loss"])})
        order = np.argsort(-np.abs(lam))
        for j, idx in enumerate(np.array_split(order, config["run"]["bands"])):
            a, s = np.log(np.abs(lam[idx])), np.log(np.maximum(vcv[idx], 1e-300))
            slope = float(np.polyfit(a, s, 1)[0]) if idx.size > 2 and np.ptp(a) > 0 else np.nan
            corr = float(np.corrcoef(a, s)[0, 1]) if idx.size > 2 else np.nan
            bands.append({"point": point, "band": j + 1, "abs_lambda_max": float(np.abs(lam[idx]).max()),
                          "abs_lambda_min": float(np.abs(lam[idx]).min()), "n": int(idx.size),
                          "negative": int(np.sum(lam[idx] < 0)), "log_correlation": corr, "log_slope": slope,
                          "ratio_median": float(np.median(vcv[idx] / np.abs(lam[idx])))})
        for b, i, p, k, alpha in c["gauss"]:
            gauss.append({"point": point, "batch_size": int(b), "direction": int(i), "normaltest_pvalue": p,
                          "excess_kurtosis": k, "hill_alpha": alpha})
    atomic_write_text(out / "eigen.csv", pd.DataFrame(eig).to_csv(index=False, float_format="%.8g"))
    table = pd.DataFrame(bands)
    atomic_write_text(out / "noise.csv", table.to_csv(index=False, float_format="%.6g"))
    g = pd.DataFrame(gauss)
    if len(g):
        g = g.groupby(["point", "batch_size"], sort=False).agg(
            directions=("direction", "size"), normaltest_pvalue_median=("normaltest_pvalue", "median"),
            excess_kurtosis_median=("excess_kurtosis", "median"), hill_alpha_median=("hill_alpha", "median"),
        ).reset_index()
    atomic_write_text(out / "gaussianity.csv", g.to_csv(index=False, float_format="%.6g"))
    return table


def write_fit(config: dict, out: Path, table=None):
    """noise.csv is the summary (kept for the runner's interface)."""
    return table


def report(out: Path) -> str:
    out = Path(out)
    bands = pd.read_csv(out / "noise.csv")
    gauss = pd.read_csv(out / "gaussianity.csv")
    fmt = lambda v: f"{v:.4g}"  # noqa: E731
    return (bands.to_string(index=False, float_format=fmt) + "\n\n" + gauss.to_string(index=False, float_format=fmt)
            + "\nratio_median: median of v' C_1 v / |lambda| (1 where C_1 = H); minibatch noise C_1 / B"
            + f"\nwrote {out}/eigen.csv, noise.csv, gaussianity.csv, manifest.json, noise.png")


def plot(out: Path) -> Path:
    """noise.png: v' C_1 v against |lambda| (log-log), filled for lambda > 0, open for lambda < 0, the line
    C_1 = H; the excess kurtosis of minibatch noise against the batch size; the Hessian's spectral density by
    stochastic Lanczos quadrature at each point."""
    from ._plots import plt, save_figure

    out = Path(out)
    eig, gauss = read_table(out / "eigen.csv"), read_table(out / "gaussianity.csv")
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4), constrained_layout=True)
    for i, (point, sub) in enumerate(eig.groupby("point", sort=False) if len(eig) else ()):
        pos, neg = sub[sub["lambda"] > 0], sub[sub["lambda"] < 0]
        axes[0].loglog(pos["lambda"], pos["vCv"], "o", color=f"C{i}", ms=4, label=f"{point}, lambda > 0")
        axes[0].loglog(-neg["lambda"], neg["vCv"], "o", mfc="none", color=f"C{i}", ms=4, label=f"{point}, lambda < 0")
    if len(eig):
        lim = np.array([np.abs(eig["lambda"]).min(), np.abs(eig["lambda"]).max()])
        axes[0].loglog(lim, lim, "k--", lw=0.8, label="C_1 = H (C = H / B for batch B)")
    axes[0].set_xlabel("|lambda_i| (Hessian eigenvalue)")
    axes[0].set_ylabel("v_i' C_1 v_i (per-sample gradient covariance)")
    axes[0].legend(fontsize=7)
    for i, (point, sub) in enumerate(gauss.groupby("point", sort=False) if len(gauss) else ()):
        axes[1].semilogx(sub["batch_size"], sub["excess_kurtosis_median"], "o-", color=f"C{i}", label=point)
    axes[1].axhline(0.0, color="k", lw=0.8, ls="--", label="Gaussian")
    axes[1].set_xlabel("batch size B")
    axes[1].set_ylabel("excess kurtosis of v . (g_B - g), median")
    axes[1].legend(fontsize=7)
    from ..curvature import SpectralDensity

    for i, (point, c) in enumerate(finished_cells(out, POINTS)):  # each point on its own scale: lambda / max |lambda|
        scale = float(np.abs(c["slq_nodes"]).max()) or 1.0
        sd = SpectralDensity(c["slq_nodes"] / scale, c["slq_weights"], int(c["dim"]), 0)
        grid = np.linspace(-1.05, 1.05, 800)
        axes[2].semilogy(grid, np.maximum(sd.density(grid, 0.01), 1e-12), color=f"C{i}",
                         label=f"{point} (max |lambda| {scale:.3g})")
    axes[2].set_xlabel("Hessian eigenvalue / max |eigenvalue|")
    axes[2].set_ylabel("spectral density (SLQ, Gaussian width 0.01)")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle("Gradient noise against the Hessian in its eigenbasis; minibatch noise against the batch size", fontsize=10)
    return save_figure(fig, out / "noise.png")
