"""Figures for experiment directories (PNG, written atomically)."""

import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ._io import atomic_write_bytes  # noqa: E402


def save_figure(fig, path: Path, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG atomically (usual file permissions) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def plot_escape_rates(out: Path) -> Path:
    """-log(rate) against 1/k and 1/sqrt(k), one series per optimizer, with 95% intervals and fits."""
    out = Path(out)
    table = pd.read_csv(out / "results.csv")
    fits = pd.read_csv(out / "fit.csv") if (out / "fit.csv").exists() else None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for ax, power, xlabel in ((axes[0], 1.0, "1 / k"), (axes[1], 0.5, "1 / sqrt(k)")):
        for i, (label, sub) in enumerate(table.groupby("optimizer", sort=False)):
            sub = sub[sub["escapes"] > 0]
            x = sub["sharpness"].to_numpy() ** -power
            y = -np.log(sub["rate"].to_numpy())
            yerr = np.abs(np.stack([-np.log(sub["rate_upper"]) - y, y + np.log(sub["rate_lower"].clip(lower=1e-300))]))
            inwin = sub["in_window"].astype(bool).to_numpy()
            color = f"C{i}"
            # this optimizer's fit row, if it has a fitted p
            rows = fits[fits["optimizer"] == label] if fits is not None else ()
            r = rows.iloc[0] if len(rows) and "p_hat" in rows and np.isfinite(rows["p_hat"].iloc[0]) else None
            p_text = "" if r is None else f", p = {r['p_hat']:.2f} [{r['p_lower']:.2f}, {r['p_upper']:.2f}]"
            ax.errorbar(x[inwin], y[inwin], yerr=yerr[:, inwin], fmt="o", color=color, label=label + p_text, capsize=2)
            if (~inwin).any():
                ax.errorbar(x[~inwin], y[~inwin], yerr=yerr[:, ~inwin], fmt="o", mfc="none", color=color, capsize=2)
            if r is not None:
                kk = np.linspace(sub["sharpness"].min(), sub["sharpness"].max(), 100)
                yy = r["a_hat"] + r["b_hat"] * kk ** (-r["p_hat"]) - r.get("q_hat", 0.0) * np.log(kk)
                ax.plot(kk**-power, yy, "--", color=color, lw=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("-log(escape rate per step)")
        ax.grid(alpha=0.3)
    axes[0].legend(title="optimizer, fitted p [95% interval]", fontsize=8)
    name = json.loads((out / "manifest.json").read_text())["config"].get("name", "") if (out / "manifest.json").exists() else ""
    fig.suptitle(f"{name}: escape rate against sharpness k. Bars: exact 95% intervals; open: outside the fit "
                 "window; dashed: -log rate = a + b k^-p at the fitted p", fontsize=10)
    return save_figure(fig, out / "escape_rates.png")


def _run_label(d: Path) -> str:
    """``name (mode[, closure, order])`` of an escape-rate run, from its manifest."""
    config = json.loads((d / "manifest.json").read_text())["config"]
    run = config["run"]
    names = {entry.get("optimizer") for entry in config.get("optimizers", {}).values()}
    mode = run.get("mode", "discrete")
    if mode == "sde":  # only the keys some model of the run takes
        if names & {"adam", "rmsprop", "adai", "adaiw"}:
            mode += f", {run.get('closure', 'quasi-static')}" + (", shared normal" if run.get("shared_normal") else "")
        if names & {"sgd", "momentum", "momentum-ema"} and run.get("order", 1) != 1:
            mode += f", order {run['order']}"
    return f"{d.name} ({mode})"


def plot_rate_comparison(out: Path, others) -> Path:
    """Rates of an escape-rate run against one or more others (e.g. fig6 discrete vs its SDE models).

    ``others``: a run directory or a list of them (say the papers' closure and the improved model). Left:
    -log rate against 1/k for every run (filled: ``out``; open, one marker per other run), per optimizer.
    Right: the ratio of ``out``'s rate to each other run's per cell, with its 95% interval (from the two
    exact intervals, conservative). Writes ``out/rates_vs_<other names>.png``.
    """
    out = Path(out)
    others = [Path(others)] if isinstance(others, (str, Path)) else [Path(o) for o in others]
    a = pd.read_csv(out / "results.csv")
    merged = []
    for other in others:
        m = a.merge(pd.read_csv(other / "results.csv"), on=["optimizer", "sharpness"], suffixes=("_a", "_b"))
        m = m[(m["escapes_a"] > 0) & (m["escapes_b"] > 0)]
        if not len(m):
            from ._config import ConfigError

            raise ConfigError(f"plot: {out} and {other} have no (optimizer, k) cell with escapes in both")
        merged.append((other, m))
    la = _run_label(out)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), constrained_layout=True)
    labels = list(dict.fromkeys(a["optimizer"]))
    markers, lines = ("s", "^", "D", "v"), ("--", ":", "-.", (0, (1, 3)))
    for i, label in enumerate(labels):
        sub = a[(a["optimizer"] == label) & (a["escapes"] > 0)]
        if len(sub):
            _rate_bars(axes[0], sub, "", "o", None, f"C{i}", f"{label}: {la}")
        for j, (other, m) in enumerate(merged):
            s = m[m["optimizer"] == label]
            if not len(s):
                continue
            _rate_bars(axes[0], s, "_b", markers[j % 4], "none", f"C{i}", f"{label}: {_run_label(other)}",
                       ls=lines[j % 4])
            x = 1.0 / s["sharpness"].to_numpy()
            ratio = s["rate_a"].to_numpy() / s["rate_b"].to_numpy()
            lo = s["rate_lower_a"].to_numpy() / s["rate_upper_b"].to_numpy()
            hi = s["rate_upper_a"].to_numpy() / s["rate_lower_b"].to_numpy()
            axes[1].errorbar(x * (1 + 0.01 * j), ratio, yerr=[ratio - lo, hi - ratio], fmt=markers[j % 4],
                             mfc="none" if j else None, color=f"C{i}", capsize=2,
                             label=f"{label} / {other.name}")
    axes[0].set_xlabel("1 / k")
    axes[0].set_ylabel("-log(escape rate per step)")
    axes[0].legend(fontsize=6)
    axes[1].axhline(1.0, color="k", lw=0.8, label="equal rates")
    for i, f in enumerate((1 / 1.5, 1.5)):
        axes[1].axhline(f, color="k", lw=0.6, ls=":", label="a factor 1.5 apart" if i == 0 else None)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("1 / k")
    axes[1].set_ylabel(f"rate ratio {out.name} / other run")
    axes[1].legend(fontsize=6)
    for ax in axes:
        ax.grid(alpha=0.3)
    names = ", ".join(_run_label(o) for o in others)
    import textwrap

    fig.suptitle(textwrap.fill(f"Escape rates: {la} against {names}. Left: filled {out.name}, open the others; "
                               "right: rate ratio per cell with a conservative 95% interval (from the two exact "
                               "intervals)", 160), fontsize=8)
    return save_figure(fig, out / f"rates_vs_{'_'.join(o.name for o in others)}.png")


def _rate_bars(ax, sub, tag: str, fmt, mfc, colour, label, ls="-"):
    """-log rate against 1/k with the exact interval as bars (columns ``rate{tag}``, ``rate_lower{tag}``, ...)."""
    sfx = tag if tag else ("_a" if "rate_a" in sub else "")
    x = 1.0 / sub["sharpness"].to_numpy()
    y = -np.log(sub[f"rate{sfx}"].to_numpy())
    err = np.abs(np.stack([-np.log(sub[f"rate_upper{sfx}"].to_numpy()) - y,
                           y + np.log(sub[f"rate_lower{sfx}"].clip(lower=1e-300).to_numpy())]))
    ax.errorbar(x, y, yerr=err, fmt=fmt, mfc=mfc, color=colour, capsize=2, label=label, ls=ls)
