"""Throughput of `escape.train.train_grid` against one training run: images per second per cell when C cells
train together (vmapped over the cells in one step) against C = 1, the same model and data, in one process.

    python benchmarks/train_grid.py                    # small ResNet width 8 on digits, C = 1, 4, 8, 20
    python benchmarks/train_grid.py --cells 1,12 --width 16 --epochs 2

Prints one line per C (seconds per epoch after a warm-up epoch that compiles, cell-images/s) and the ratio of
each to C = 1. The grid runs are those of the robustness experiment (digits, batch 64, 22 steps per epoch).
"""

import argparse
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="1,4,8,20", help="comma-separated cell counts (default 1,4,8,20)")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after the warm-up (default 2)")
    p.add_argument("--optimizer", default="adai")
    args = p.parse_args()
    import jax

    from escape.train import load_dataset, train_grid, TrainConfig

    print(f"devices: {jax.devices()}")
    counts = [int(c) for c in args.cells.split(",")]
    rates = {}
    for c in counts:
        base = TrainConfig(data="digits", optimizer=args.optimizer, learning_rate=0.5, width=args.width,
                           epochs=1, batch_size=64, sharpness=False)
        data = load_dataset(base)
        lrs, wds = np.geomspace(0.1, 1.0, c), np.full(c, 5e-4)
        train_grid(base, lrs, wds)  # compiles
        timed = TrainConfig(**{**base.to_dict(), "epochs": args.epochs})
        t = time.perf_counter()
        train_grid(timed, lrs, wds, dataset=data)
        seconds = (time.perf_counter() - t) / args.epochs
        images = c * (len(data.train.labels) // 64) * 64
        rates[c] = images / seconds
        print(f"C = {c:3d}: {seconds:7.2f} s per epoch (evaluation included), {rates[c]:9.0f} cell-images/s")
    for c in counts:
        print(f"ratio C = {c} / C = {counts[0]}: {rates[c] / rates[counts[0]]:.2f}")


if __name__ == "__main__":
    main()
