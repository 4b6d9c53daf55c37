"""Plain NumPy (float64) transcription of the official Adai / AdaiW update rules.

Source of the rules: ``adai_optim/adai.py`` (``Adai(..., decoupled=False|True)``) and the older
``adai_optim/adaiw.py`` in github.com/zeke-xie/adaptive-inertia-adai. Written independently from the
JAX port, with the same two passes over the parameters as the official ``step``:

pass 1, per parameter: weight decay (L2 into the gradient, or decoupled shrinkage of the parameter),
    ``v <- beta2 v + (1 - beta2) g^2``, accumulate ``sum(v) / (1 - beta2^t)`` and the element count;
pass 2, per parameter: ``beta1 = clip(1 - beta0 v_hat / mean, 0, 1 - eps)``, ``P <- P beta1``,
    ``m <- beta1 m + (1 - beta1) g``, ``theta <- theta - lr m / (1 - P)``.
"""

import numpy as np


class AdaiReference:
    """Adai on a dict of NumPy arrays, state held per parameter name (like ``torch.optim`` state)."""

    def __init__(self, params, lr, beta0=0.1, beta2=0.99, eps=1e-3, weight_decay=0.0, decoupled=False):
        self.params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
        self.lr, self.beta0, self.beta2, self.eps = lr, beta0, beta2, eps
        self.weight_decay, self.decoupled = weight_decay, decoupled
        self.state = {
            k: {
                "step": 0,
                "exp_avg": np.zeros_like(v),
                "exp_avg_sq": np.zeros_like(v),
                "beta1_prod": np.ones_like(v),
            }
            for k, v in self.params.items()
        }
        self.last_beta1 = {}

    def step(self, grads):
        """One update with gradients ``grads`` (dict like ``params``); returns the new parameters."""
        grads = {k: np.array(g, dtype=np.float64) for k, g in grads.items()}
        param_size = 0
        exp_avg_sq_hat_sum = 0.0
        for name, p in self.params.items():
            state, grad = self.state[name], grads[name]
            state["step"] += 1
            bias_correction2 = 1 - self.beta2 ** state["step"]
            if self.weight_decay != 0 and not self.decoupled:
                grad = grad + self.weight_decay * p
                grads[name] = grad  # the official code edits p.grad in place: pass 2 sees the decayed grad
            elif self.weight_decay != 0 and self.decoupled:
                self.params[name] = p * (1 - self.lr * self.weight_decay)
            state["exp_avg_sq"] = self.beta2 * state["exp_avg_sq"] + (1 - self.beta2) * grad * grad
            exp_avg_sq_hat_sum += state["exp_avg_sq"].sum() / bias_correction2
            param_size += p.size
        exp_avg_sq_hat_mean = exp_avg_sq_hat_sum / param_size

        for name, p in self.params.items():
            state, grad = self.state[name], grads[name]
            bias_correction2 = 1 - self.beta2 ** state["step"]
            exp_avg_sq_hat = state["exp_avg_sq"] / bias_correction2
            beta1 = np.clip(1.0 - self.beta0 * (exp_avg_sq_hat / exp_avg_sq_hat_mean), 0.0, 1 - self.eps)
            state["beta1_prod"] = state["beta1_prod"] * beta1
            bias_correction1 = 1 - state["beta1_prod"]
            state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * grad
            exp_avg_hat = state["exp_avg"] / bias_correction1
            self.params[name] = p - self.lr * exp_avg_hat
            self.last_beta1[name] = beta1
        return {k: v.copy() for k, v in self.params.items()}
