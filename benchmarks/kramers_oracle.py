"""Print the Kramers oracle comparison of tests/test_engine.py::test_kramers_oracle_double_well.

SGD with constant isotropic noise on the double well L = barrier ((x/w)^2 - 1)^2, D = eta sigma^2 / 2,
barrier / D = 6: mean escape time (steps) from the engine vs Eyring-Kramers and the exact 1-d MFPT.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from escape.landscapes import DoubleWell
from escape.simulate import escape_times
from escape.stats import censored_rate
from escape.theory import eyring_kramers_time, mean_first_passage_1d


def main(ratio=6.0, eta=0.002, n=512, seed=11):
    barrier = 1.0
    D = barrier / ratio
    dw = DoubleWell(barrier=barrier, noise="isotropic", sigma=float(np.sqrt(2 * D / eta)))
    cp = dw.critical_points()
    ek = eyring_kramers_time(barrier, D, cp.hessian_minimum[0], cp.hessian_saddle[0]) / eta
    exact = mean_first_passage_1d(lambda x: float(dw.loss(jnp.array([x]))), D, -1.0, 1.0, lower=-3.0) / eta
    res = escape_times(dw, optax.sgd(eta), batch_size=1, n_particles=n, max_steps=int(3 * ek), key=jax.random.key(seed))
    est = censored_rate(res)
    print(f"barrier/D = {ratio}, eta = {eta}, eta*H_a = {eta * cp.hessian_minimum[0]:.3f}, particles = {n}")
    print(f"estimated mean escape time: {est.mean_time:.4g} steps, 95% CI [{1 / est.upper:.4g}, {1 / est.lower:.4g}], escapes {est.events}")
    print(f"Eyring-Kramers: {ek:.4g} steps (ratio estimate/EK = {est.mean_time / ek:.3f}; allowance D/barrier + discretisation = {D / barrier + ratio * eta * cp.hessian_minimum[0] / 2:.3f})")
    print(f"exact 1-d MFPT: {exact:.4g} steps (ratio estimate/exact = {est.mean_time / exact:.3f})")


if __name__ == "__main__":
    main()
