"""Figures of the implicit-bias experiment: implicit_bias.png (orders, regimes, large eps) and grid.png."""

from pathlib import Path

import numpy as np

from ._io import finished_cells, read_table


def reg_level(out: Path) -> float:
    """The loss level of the regimes part, from the run's manifest."""
    import json

    return json.loads((Path(out) / "manifest.json").read_text())["config"]["regimes"]["level"]


def plot(out: Path) -> Path:
    """implicit_bias.png: global error against h (log-log, one panel per problem, reference slopes 1 and 2);
    the bilinear trajectories of Adam per (b1, b2) and h with the h -> 0 limit, the loss level and the limit
    point of one-norm minimisers; the gap between Adam's modified ODE and heavy-ball GD's against eps.
    grid.png (when the grid ran): the perturbed one-norm along training and the test accuracy per (b1, b2)."""
    from ._plots import plt, save_figure

    out = Path(out)
    orders, big = read_table(out / "orders.csv"), read_table(out / "large_eps.csv")
    fig, grid = plt.subplots(2, 3, figsize=(17, 9.5), constrained_layout=True)
    axes = grid.ravel()
    for ax, problem in zip(axes[:3], ("bilinear", "network", "minibatch")):
        sub = orders[orders["problem"] == problem] if len(orders) else orders
        for i, (ode, s) in enumerate(sub.groupby("ode", sort=False) if len(sub) else ()):
            ax.loglog(s["learning_rate"], s["error"], "o-", color=f"C{i}", label=ode)
        if len(sub):
            h = np.array([sub["learning_rate"].min(), sub["learning_rate"].max()])
            top = sub["error"].max()
            ax.loglog(h, top * (h / h[1]) ** 1, "k:", lw=0.8, label="slope 1")
            ax.loglog(h, sub["error"].min() * (h / h[0]) ** 2, "k--", lw=0.8, label="slope 2")
        ax.set_title({"bilinear": "bilinear model", "network": "digits network, full batch",
                      "minibatch": "digits network, mini-batch (piecewise ODE)"}[problem], fontsize=9)
        ax.set_xlabel("step size h")
        ax.set_ylabel("max_n ||theta^(n) - theta~(n h)||")
        ax.legend(fontsize=7)
    ax, zoom = axes[3], axes[4]
    reg = read_table(out / "regimes.csv")
    for _, c in finished_cells(out, ["regimes"]):
        bounds = np.concatenate([[0], np.cumsum(c["lengths"])])
        traj = c["trajectories"]
        pieces = [("h -> 0 (perturbed sign flow)", "k", 1.6, traj[: bounds[1]])]
        for i in range(1, len(bounds) - 1):
            r = reg.iloc[i - 1]
            pieces.append((f"b1 {r.b1:g}, b2 {r.b2:g}, h {r.learning_rate:g}", f"C{i % 10}", 0.9,
                           traj[bounds[i]: bounds[i + 1]]))
        for label, color, lw, t in pieces:
            ax.plot(*t.T, "-", lw=lw, color=color, label=label)
            zoom.plot(4 * t[:, 0] * t[:, 1] - 3, t[:, 1] - t[:, 0], "-", lw=lw, color=color, label=label)
        x = np.linspace(0.3, 3.0, 200)
        ax.plot(x, 0.75 / x, color="0.6", lw=0.8, label="minima theta_1 theta_2 = 3/4")
        ax.plot([np.sqrt(3) / 2], [np.sqrt(3) / 2], "kx", ms=9, mew=2, label="limit of one-norm minimisers")
        ax.set_xlim(0.3, 3.0)
        ax.set_ylim(0.3, 3.7)
        if len(reg):
            level_c = np.sqrt(8 * float(reg_level(out)))
            zoom.axvline(level_c, color="0.5", ls=":", lw=0.8, label="the loss level of regimes.csv")
        zoom.set_xlim(left=0.0)
        zoom.set_xlabel("4 theta_1 theta_2 - 3 (0 on the minima; loss = c^2 / 8)")
        zoom.set_ylabel("theta_2 - theta_1 (one-norm at fixed loss grows with it)")
        zoom.invert_xaxis()
        zoom.set_title("the same trajectories: distance from the diagonal against the level", fontsize=9)
        zoom.legend(fontsize=6)
    ax.set_title("Adam on the bilinear model from (2.8, 3.5)", fontsize=9)
    ax.set_xlabel("theta_1")
    ax.set_ylabel("theta_2")
    ax.legend(fontsize=6)
    ax = axes[5]
    if len(big):
        ax.loglog(big["eps"], big["ode_vs_heavy_ball"], "o-", label="|Adam modified ODE - heavy-ball ODE|")
        ax.loglog(big["eps"], big["adam_vs_ode"], "s-", label="|Adam - its modified ODE| (O(h^2) at fixed h / sqrt(eps))")
        e = big["eps"].to_numpy()
        ax.loglog(e, big["ode_vs_heavy_ball"].iloc[0] * e[0] / e, "k--", lw=0.8, label="slope -1")
    ax.set_xlabel("eps (h / sqrt(eps) fixed)")
    ax.set_ylabel("max over the horizon")
    ax.set_title("large eps: Adam -> heavy-ball GD (Example 2.1)", fontsize=9)
    ax.legend(fontsize=7)
    for a in axes:
        a.grid(alpha=0.3)
    path = save_figure(fig, out / "implicit_bias.png")
    _plot_grid(out)
    return path


def _plot_grid(out: Path) -> None:
    from ._plots import plt, save_figure

    grid, curves = read_table(out / "grid.csv"), read_table(out / "norm_curves.csv")
    if not len(grid):
        return
    floor = float(grid["norm_floor"].iloc[0])
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6), constrained_layout=True)
    mean = curves.groupby(["b1", "b2", "step"], sort=True)["norm"].mean().reset_index()
    for i, ((b1, b2), s) in enumerate(mean.groupby(["b1", "b2"])):
        axes[0].semilogy(s["step"], s["norm"] - floor, color=f"C{i % 10}", lw=0.9, label=f"b1 {b1:g}, b2 {b2:g}")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("||grad E||_{1,eps} - p sqrt(eps) (mean over seeds)")
    axes[0].legend(fontsize=6)
    pos = lambda r: -np.log10(1.0 - np.asarray(r, float))  # noqa: E731  (0.99, 0.999, ... equally spaced)
    for b1, s in grid.groupby("b1"):
        axes[1].errorbar(pos(s["b2"]), s["test_accuracy"], yerr=s["test_accuracy_se"], fmt="o-", capsize=3, label=f"b1 {b1:g}")
        axes[2].errorbar(pos(s["b2"]), s["norm_at_level"] - floor, yerr=s["norm_at_level_se"], fmt="o-", capsize=3,
                         label=f"b1 {b1:g}")
    axes[1].set_ylabel("test accuracy (mean +- s.e.)")
    axes[2].set_ylabel("one-norm at the loss level, minus p sqrt(eps)")
    axes[2].set_yscale("log")
    for a in axes[1:]:
        a.set_xlabel("b2 (rho), spaced by -log10(1 - rho)")
        ticks = sorted(set(grid["b2"]))
        a.set_xticks(pos(ticks), [f"{t:g}" for t in ticks])
        a.legend(fontsize=7)
    for a in axes:
        a.grid(alpha=0.3)
    axes[1].set_title("test accuracy after training", fontsize=9)
    axes[2].set_title("perturbed one-norm where the training loss first reaches grid.loss_level", fontsize=9)
    fig.suptitle("Full-batch Adam on digits over (b1, b2)", fontsize=10)
    save_figure(fig, out / "grid.png")
