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
            ax.errorbar(x[inwin], y[inwin], yerr=yerr[:, inwin], fmt="o", color=color, label=label, capsize=2)
            if (~inwin).any():
                ax.errorbar(x[~inwin], y[~inwin], yerr=yerr[:, ~inwin], fmt="o", mfc="none", color=color, capsize=2)
            if fits is not None:
                row = fits[fits["optimizer"] == label]
                if len(row) and "p_hat" in row and np.isfinite(row["p_hat"].iloc[0]):
                    r = row.iloc[0]
                    kk = np.linspace(sub["sharpness"].min(), sub["sharpness"].max(), 100)
                    yy = r["a_hat"] + r["b_hat"] * kk ** (-r["p_hat"]) - r.get("q_hat", 0.0) * np.log(kk)
                    ax.plot(kk**-power, yy, "--", color=color, lw=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("-log(escape rate per step)")
        ax.grid(alpha=0.3)
    axes[0].legend(title="optimizer (open: outside fit window)", fontsize=8)
    name = json.loads((out / "manifest.json").read_text())["config"].get("name", "") if (out / "manifest.json").exists() else ""
    fig.suptitle(f"{name}: escape rate against sharpness k (dashed: fit at estimated p)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    path = out / "escape_rates.png"
    atomic_write_bytes(path, buf.getvalue())
    return path
