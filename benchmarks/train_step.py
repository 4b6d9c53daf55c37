"""Time per training step of a CIFAR model (ResNet-18 by default) with Adai, optax Adam and optax SGD, in one run.

    python benchmarks/train_step.py                          # ResNet-18, batch 128, 3x32x32, 5 timed steps
    python benchmarks/train_step.py --model vgg16            # any model of escape.train.MODELS (the Adai zoo)
    python benchmarks/train_step.py --model all --width 4 --batch-size 8 --steps 1 --repeats 1 --optimizers adai
    python benchmarks/train_step.py --width 16 --batch-size 32 --steps 10 --repeats 3   # quick, on a CPU
    python benchmarks/train_step.py --optimizers adai,adam   # a subset (fewer compilations)

The step is [`escape.train.train_step`][]: augmentation (pad-4 crop, flip) and normalisation, forward and
backward with training-mode BatchNorm, the optimizer update, on synthetic CIFAR-shaped data (uint8 images, 10
classes) that stay on the device. Each optimizer's step is compiled and run ``--warmup`` times first; then
``--repeats`` rounds time ``--steps`` steps of every optimizer in turn (interleaved, so that a change in the
machine's load hits all of them alike), and the median round is reported. Target: Adai within 1.15x of Adam.
First, the optimizer update alone (``update`` and ``apply_updates`` on the model's parameters, jitted, 10 x
``--steps`` updates per round) is timed the same way: the part of the step in which the optimizers differ.

On a GPU it also reports images per second in float32 and bfloat16 compute, and, if PyTorch with CUDA is
importable, the same model trained by PyTorch with Adai and with torch's Adam and SGD as the baseline. The
PyTorch Adai is the official ``adai_optim.Adai`` (github.com/zeke-xie/adaptive-inertia-adai) when that package
is importable (put its folder on PYTHONPATH), else a transcription of the update rule of docs/api/optim.md
(below); the output names which one ran.
"""

import argparse
import statistics
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from escape.data import Normalization
from escape.models import count_parameters
from escape.optim import adai
from escape.train import MODELS, Pipeline, train_step, TrainState


OPTIMIZERS = ("adai", "adam", "sgd")


def _optimizers(names=OPTIMIZERS):
    every = {"adai": lambda: adai(0.1, weight_decay=5e-4), "adam": lambda: optax.adam(1e-3),
             "sgd": lambda: optax.sgd(0.1)}
    return {name: every[name]() for name in names}


def _model(args, compute_dtype):
    """``(model, state)`` of ``args.model`` at ``args.width`` for 3-channel images and 10 classes."""
    return MODELS[args.model](10, key=jax.random.key(0), in_channels=3, width=args.width, compute_dtype=compute_dtype)


def _jax_runs(args, compute_dtype) -> dict[str, float]:
    """Median seconds per step of each optimizer (interleaved rounds)."""
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (args.batch_size, 3, 32, 32), dtype=np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, (args.batch_size,), dtype=np.int32))
    pipeline = Pipeline(Normalization([0.49, 0.48, 0.45], [0.25, 0.24, 0.26]), augment=True)
    model, bn_state = _model(args, compute_dtype)
    print(f"  {args.model} width {args.width}: {count_parameters(model):,} parameters, batch {args.batch_size}, "
          f"compute {jnp.dtype(compute_dtype or jnp.float32).name}", flush=True)
    states, opts = {}, _optimizers(args.optimizers)
    for name, opt in opts.items():
        ts = TrainState(model, bn_state, opt.init(eqx.filter(model, eqx.is_inexact_array)), jnp.zeros((), jnp.int32),
                        jax.random.key(1))
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            ts, loss, _ = train_step(ts, images, labels, opt, pipeline)
        jax.block_until_ready(loss)
        print(f"  {name}: compiled and warmed up in {time.perf_counter() - t0:.1f} s", flush=True)
        states[name] = ts
    rounds = {name: [] for name in opts}
    for _ in range(args.repeats):
        for name, opt in opts.items():
            ts = states[name]
            t0 = time.perf_counter()
            for _ in range(args.steps):
                ts, loss, _ = train_step(ts, images, labels, opt, pipeline)
            jax.block_until_ready((ts, loss))
            rounds[name].append((time.perf_counter() - t0) / args.steps)
            states[name] = ts
    return {name: statistics.median(r) for name, r in rounds.items()}


def _update_runs(args) -> dict[str, float]:
    """Median seconds of the optimizer update alone (update + apply to the ResNet-18 parameters), jitted."""
    model, _ = _model(args, None)
    params = eqx.filter(model, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(2)  # NumPy: one jax.random.normal per leaf shape would compile ~60 kernels
    grads = jax.tree.unflatten(treedef, [jnp.asarray(1e-3 * rng.standard_normal(x.shape), x.dtype) for x in leaves])
    opts = _optimizers(args.optimizers)
    steps = {name: jax.jit(lambda p, s, g, opt=opt: _apply(opt, p, s, g)) for name, opt in opts.items()}
    states = {name: opt.init(params) for name, opt in opts.items()}
    current = {name: params for name in opts}
    for name in opts:
        current[name], states[name] = steps[name](current[name], states[name], grads)
        jax.block_until_ready(current[name])
    rounds = {name: [] for name in opts}
    n = 10 * args.steps
    for _ in range(args.repeats):
        for name in opts:
            t0 = time.perf_counter()
            for _ in range(n):
                current[name], states[name] = steps[name](current[name], states[name], grads)
            jax.block_until_ready(current[name])
            rounds[name].append((time.perf_counter() - t0) / n)
    return {name: statistics.median(r) for name, r in rounds.items()}


def _apply(opt, params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def _report_updates(seconds: dict[str, float]) -> None:
    for name, s in seconds.items():
        print(f"  update only    {name:<5} {1e3 * s:9.3f} ms/update")
    ratios = [f"adai/{b} {seconds['adai'] / seconds[b]:.3f}" for b in ("adam", "sgd") if {"adai", b} <= set(seconds)]
    if ratios:
        print(f"  update only    ratios: {', '.join(ratios)}")


def _report(label: str, seconds: dict[str, float], batch: int) -> None:
    for name, s in seconds.items():
        print(f"  {label:<14} {name:<5} {1e3 * s:9.2f} ms/step {batch / s:10.1f} images/s")
    ratios = []
    for a, b in (("adai", "adam"), ("adai", "sgd"), ("adam", "sgd")):
        if {a, b} <= set(seconds):
            r = seconds[a] / seconds[b]
            target = ""
            if (a, b) == ("adai", "adam"):
                target = f" ({'within' if r <= 1.15 else 'NOT within'} the 1.15 target)"
            ratios.append(f"{a}/{b} {r:.3f}{target}")
    if ratios:
        print(f"  {label:<14} ratios: {', '.join(ratios)}")


# ------------------------------------------------------------------------------------- PyTorch baseline (GPU)


def _torch_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _torch_runs(args) -> None:
    """The same model, data shapes and optimizers in PyTorch on CUDA, float32 and bf16 autocast."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.short = None
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = F.relu(self.b1(self.c1(x)))
            out = self.b2(self.c2(out))
            return F.relu(out + (x if self.short is None else self.short(x)))

    class TorchResNet18(nn.Module):
        def __init__(self, width, classes=10):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
            layers, cin = [], width
            for i, w in enumerate((width, 2 * width, 4 * width, 8 * width)):
                for j in range(2):
                    layers.append(Block(cin, w, 2 if (i > 0 and j == 0) else 1))
                    cin = w
            self.layers = nn.Sequential(*layers)
            self.head = nn.Linear(cin, classes)

        def forward(self, x):
            return self.head(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))

    class TorchAdai(torch.optim.Optimizer):
        """Adai as docs/api/optim.md states it (steps 1-5), written for this baseline: L2 weight decay, then
        v <- b2 v + (1 - b2) g^2, v_hat = v / (1 - b2^t), v_bar = mean of v_hat over all elements of all
        parameters, beta1 = clip(1 - beta0 v_hat / v_bar, 0, 1 - eps), m <- beta1 m + (1 - beta1) g,
        P <- P beta1, theta <- theta - lr m / (1 - P)."""

        def __init__(self, params, lr, beta0=0.1, beta2=0.99, eps=1e-3, weight_decay=0.0):
            super().__init__(params, dict(lr=lr, beta0=beta0, beta2=beta2, eps=eps, weight_decay=weight_decay))

        @torch.no_grad()
        def step(self):
            total, count, grads = None, 0, {}
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    st = self.state[p]
                    if not st:
                        st["t"] = 0
                        st["m"] = torch.zeros_like(p)
                        st["v"] = torch.zeros_like(p)
                        st["P"] = torch.ones_like(p)
                    g = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                    grads[p] = g
                    st["t"] += 1
                    st["v"].mul_(group["beta2"]).addcmul_(g, g, value=1 - group["beta2"])
                    s = st["v"].sum() / (1 - group["beta2"] ** st["t"])
                    total = s if total is None else total + s
                    count += p.numel()
            if total is None:
                return
            v_bar = total / count
            for group in self.param_groups:
                for p in group["params"]:
                    if p not in grads:
                        continue
                    st, g = self.state[p], grads[p]
                    v_hat = st["v"] / (1 - group["beta2"] ** st["t"])
                    beta1 = (1 - group["beta0"] * v_hat / v_bar).clamp_(0.0, 1 - group["eps"])
                    st["m"].mul_(beta1).add_((1 - beta1) * g)
                    st["P"].mul_(beta1)
                    p.sub_(group["lr"] * st["m"] / (1 - st["P"]))

    try:
        from adai_optim import Adai as OfficialAdai  # the authors' implementation, if installed
    except ImportError:
        OfficialAdai = None
    which = "official adai_optim.Adai" if OfficialAdai else "transcription (adai_optim not importable)"
    print(f"  PyTorch Adai: {which}, torch {torch.__version__}", flush=True)

    def make_adai(params):
        if OfficialAdai is not None:
            return OfficialAdai(params, lr=0.1, betas=(0.1, 0.99), eps=1e-3, weight_decay=5e-4)
        return TorchAdai(params, lr=0.1, weight_decay=5e-4)

    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    x = torch.randint(0, 256, (args.batch_size, 3, 32, 32), device=device, dtype=torch.uint8)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    mean = torch.tensor([0.49, 0.48, 0.45], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.25, 0.24, 0.26], device=device).view(1, 3, 1, 1)

    def augment(images):  # pad-4 random crop and flip, per example, on the device (as the JAX step does)
        n = images.shape[0]
        padded = F.pad(images.float() / 255, (4, 4, 4, 4))  # (n, 3, 40, 40)
        i = torch.randint(0, 9, (n,), device=device)
        j = torch.randint(0, 9, (n,), device=device)
        windows = padded.unfold(2, 32, 1).unfold(3, 32, 1)  # (n, 3, 9, 9, 32, 32)
        crop = windows[torch.arange(n, device=device), :, i, j]  # (n, 3, 32, 32)
        flip = torch.rand(n, device=device) < 0.5
        crop = torch.where(flip.view(n, 1, 1, 1), crop.flip(3), crop)
        return (crop - mean) / std

    for mode in ("float32", "bfloat16"):
        seconds = {}
        for name in args.optimizers:
            torch.manual_seed(0)
            model = TorchResNet18(args.width).to(device)
            opt = {"adai": make_adai,
                   "adam": lambda p: torch.optim.Adam(p, lr=1e-3),
                   "sgd": lambda p: torch.optim.SGD(p, lr=0.1)}[name](model.parameters())

            def step():
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=(mode == "bfloat16")):
                    loss = F.cross_entropy(model(augment(x)), y)
                loss.backward()
                opt.step()

            for _ in range(max(args.warmup, 3)):
                step()
            torch.cuda.synchronize()
            rounds = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    step()
                torch.cuda.synchronize()
                rounds.append((time.perf_counter() - t0) / args.steps)
            seconds[name] = statistics.median(rounds)
        _report(f"torch {mode}", seconds, args.batch_size)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round (default: 5 on CPU, 50 on GPU)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--model", default="resnet18", help=f"one of {', '.join(MODELS)}, or all (one after another)")
    parser.add_argument("--width", type=int, default=None, help="model width (default: the model's own, the standard model)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline on a GPU")
    parser.add_argument("--update-only", action="store_true", help="time only the optimizer updates (cheap)")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="comma-separated subset of adai, adam, sgd")
    args = parser.parse_args(argv)
    args.optimizers = [v.strip() for v in args.optimizers.split(",") if v.strip()]
    if not args.optimizers or not set(args.optimizers) <= set(OPTIMIZERS):
        parser.error(f"--optimizers: choose from {', '.join(OPTIMIZERS)}")
    if args.model != "all" and args.model not in MODELS:
        parser.error(f"--model: choose from {', '.join(MODELS)}, or all")
    backend = jax.default_backend()
    if args.steps is None:
        args.steps = 50 if backend == "gpu" else 5
    print(f"backend {backend}, devices {jax.devices()}, jax {jax.__version__}", flush=True)
    if args.model == "all":
        for name in MODELS:
            print(f"== {name}", flush=True)
            _run_model(argparse.Namespace(**{**vars(args), "model": name, "no_torch": True}), backend)
        return
    _run_model(args, backend)


def _run_model(args, backend: str) -> None:
    if args.width is None:
        import inspect

        args.width = inspect.signature(MODELS[args.model]).parameters["width"].default
    _report_updates(_update_runs(args))
    if args.update_only:
        return
    fp32 = _jax_runs(args, None)
    _report("jax float32", fp32, args.batch_size)
    if backend == "gpu":
        bf16 = _jax_runs(args, jnp.bfloat16)
        _report("jax bfloat16", bf16, args.batch_size)
        if not args.no_torch and args.model != "resnet18":
            print("  (the PyTorch baseline is ResNet-18's only)")
        elif not args.no_torch and _torch_available():
            _torch_runs(args)
        elif not args.no_torch:
            print("  (PyTorch with CUDA not importable: no PyTorch baseline)")


if __name__ == "__main__":
    main(sys.argv[1:])
