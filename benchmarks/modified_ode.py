"""Cost of Adam's modified equations, as ratios measured in one run.

1. One evaluation of the first-order modified ODE's right-hand side (``AdamEquation``: a gradient and a
   Hessian-vector product through one ``jax.linearize``) against one gradient of the same loss: target at most
   3 gradient evaluations. Beside it, the reverse-over-reverse alternative (``grad`` of the perturbed one-norm
   with the gradient as aux) and the mini-batch piecewise field (per minibatch: one gradient and two HVPs, plus
   the moment history), each in the same units. Median of interleaved timings of the jitted functions.
2. The bilinear h-sweep of the implicit-bias experiment (its default ``[bilinear]`` section: three ODEs, six
   step sizes, T = 0.5, Dopri8 at 1e-12, x64), wall time including compilation: target under 30 s on 2 cores.

The network: fully connected tanh 64 -> W -> W -> 10 on the digits training set (cross-entropy, full batch),
W = 256 by default (about 84k parameters).

    python benchmarks/modified_ode.py [--width 256] [--repeats 30] [--minibatches 4]
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from escape.experiments import check_config, load_config
from escape.experiments._aeos import init_params, load_data, tanh_mlp
from escape.experiments._implicit_cells import bilinear_orders
from escape.modified import AdamEquation, MinibatchAdamEquation, perturbed_one_norm


def _median_ratio(functions: dict, repeats: int) -> dict:
    for f, args in functions.values():
        jax.block_until_ready(f(*args))
    times = {k: [] for k in functions}
    for _ in range(repeats):  # interleaved, so that drifts of the machine hit all alike
        for k, (f, args) in functions.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(*args))
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--minibatches", type=int, default=4)
    ap.add_argument("--history", type=int, default=100, help="steps of the mini-batch field's moment history")
    args = ap.parse_args()

    x, y = load_data(check_config(load_config("aeos")))
    labels = jnp.argmax(y, axis=1)
    n = (x.shape[0] // args.minibatches) * args.minibatches
    x, labels = x[:n], labels[:n]
    params = init_params(jax.random.key(0), (x.shape[1], args.width, args.width, y.shape[1]))
    dim = sum(p.size for p in jax.tree.leaves(params))
    eps = 1e-8

    def loss(p):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(tanh_mlp(p, x), labels))

    xb, lb = x.reshape(args.minibatches, -1, x.shape[1]), labels.reshape(args.minibatches, -1)

    def batch_loss(p, b):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(tanh_mlp(p, xb[b]), lb[b]))

    field = AdamEquation(loss, 1e-3, 0.9, 0.999, eps)
    schedule = np.arange(args.history) % args.minibatches
    mb_field = MinibatchAdamEquation(batch_loss, schedule, 1e-3, 0.9, 0.999, eps)

    def reverse_over_reverse(p):
        def norm(q):
            g = jax.grad(loss)(q)
            return perturbed_one_norm(g, eps), g

        big_g, g = jax.grad(norm, has_aux=True)(p)
        return g, big_g

    n_mid = jnp.asarray(args.history - 1)
    t = _median_ratio({
        "gradient": (jax.jit(jax.grad(loss)), (params,)),
        "modified ODE field (linearize: gradient + HVP)": (jax.jit(lambda p: field(n_mid, p)), (params,)),
        "reverse-over-reverse alternative": (jax.jit(reverse_over_reverse), (params,)),
        f"mini-batch field ({args.minibatches} minibatches, history {args.history})":
            (jax.jit(lambda p: mb_field(n_mid, p)), (params,)),
    }, args.repeats)
    base = t["gradient"]
    print(f"network 64-{args.width}-{args.width}-10 on {n} digits, {dim} parameters, float32; "
          f"median of {args.repeats} interleaved timings")
    for k, v in t.items():
        print(f"  {k:58s} {v * 1e3:8.3f} ms   {v / base:5.2f} gradient evaluations")
    ratio = t["modified ODE field (linearize: gradient + HVP)"] / base
    print(f"modified ODE right-hand side: {ratio:.2f} gradient evaluations (target <= 3: "
          f"{'met' if ratio <= 3 else 'MISSED'})")

    config = check_config(load_config("implicit_bias"))
    t0 = time.perf_counter()
    cell = bilinear_orders(config)
    wall = time.perf_counter() - t0
    sec = config["bilinear"]
    print(f"bilinear h-sweep: {len(cell['ode'])} ODEs x {len(cell['learning_rate'])} step sizes "
          f"({sec['h_min']:g} .. {sec['h_max']:g}, T = {sec['horizon']:g}, up to "
          f"{int(round(sec['horizon'] / sec['h_min']))} steps), compile included: {wall:.1f} s "
          f"(target < 30 s: {'met' if wall < 30 else 'MISSED'})")


if __name__ == "__main__":
    main()
