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


class AdaiV2Reference:
    """The official ``adai_optim/adaiv2.py`` (``AdaiV2``) on a dict of NumPy arrays, float64.

    Pass 1 as Adai's (weight decay, ``v``, the global mean of ``v_hat``); pass 2 with the dampening ``d``:
    ``beta1 = clip(1 - beta0 (v_hat / mean)^(1 / (3 - 2 d)), 0, 1 - eps)``, ``beta3 = (1 - beta1)^d``,
    ``P <- P beta1``, ``m <- beta1 m + beta3 g``, ``theta <- theta - lr beta0^(1 - d) m / (1 - P)``.
    """

    def __init__(self, params, lr, beta0=0.1, beta2=0.99, eps=1e-3, weight_decay=0.0, dampening=1.0,
                 decoupled=True):
        self.params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
        self.lr, self.beta0, self.beta2, self.eps = lr, beta0, beta2, eps
        self.weight_decay, self.dampening, self.decoupled = weight_decay, dampening, decoupled
        self.state = {k: {"step": 0, "exp_avg": np.zeros_like(v), "exp_avg_sq": np.zeros_like(v),
                          "beta1_prod": np.ones_like(v)} for k, v in self.params.items()}
        self.last_beta1 = {}

    def step(self, grads):
        grads = {k: np.array(g, dtype=np.float64) for k, g in grads.items()}
        param_size, exp_avg_sq_hat_sum = 0, 0.0
        for name, p in self.params.items():
            state, grad = self.state[name], grads[name]
            state["step"] += 1
            bias_correction2 = 1 - self.beta2 ** state["step"]
            if self.weight_decay != 0 and not self.decoupled:
                grad = grad + self.weight_decay * p
                grads[name] = grad
            elif self.weight_decay != 0 and self.decoupled:
                self.params[name] = p * (1 - self.lr * self.weight_decay)
            state["exp_avg_sq"] = self.beta2 * state["exp_avg_sq"] + (1 - self.beta2) * grad * grad
            exp_avg_sq_hat_sum += state["exp_avg_sq"].sum() / bias_correction2
            param_size += p.size
        mean = exp_avg_sq_hat_sum / param_size
        d = self.dampening
        for name, p in self.params.items():
            state, grad = self.state[name], grads[name]
            exp_avg_sq_hat = state["exp_avg_sq"] / (1 - self.beta2 ** state["step"])
            beta1 = np.clip(1.0 - (exp_avg_sq_hat / mean) ** (1.0 / (3 - 2 * d)) * self.beta0, 0.0, 1 - self.eps)
            beta3 = (1.0 - beta1) ** d
            state["beta1_prod"] = state["beta1_prod"] * beta1
            state["exp_avg"] = beta1 * state["exp_avg"] + beta3 * grad
            exp_avg_hat = state["exp_avg"] / (1 - state["beta1_prod"]) * self.beta0 ** (1.0 - d)
            self.params[name] = p - self.lr * exp_avg_hat
            self.last_beta1[name] = beta1
        return {k: v.copy() for k, v in self.params.items()}


class AdaBoundReference:
    """The authors' ``adabound.py`` (``AdaBound``, amsbound off) on a dict of NumPy arrays, float64."""

    def __init__(self, params, lr, betas=(0.9, 0.999), final_lr=0.1, gamma=1e-3, eps=1e-8, weight_decay=0.0):
        self.params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
        self.lr, self.base_lr, self.betas, self.final_lr = lr, lr, betas, final_lr
        self.gamma, self.eps, self.weight_decay = gamma, eps, weight_decay
        self.state = {k: {"step": 0, "exp_avg": np.zeros_like(v), "exp_avg_sq": np.zeros_like(v)}
                      for k, v in self.params.items()}

    def step(self, grads):
        beta1, beta2 = self.betas
        for name, p in self.params.items():
            state, grad = self.state[name], np.array(grads[name], np.float64)
            if self.weight_decay != 0:
                grad = grad + self.weight_decay * p
            state["step"] += 1
            state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * grad
            state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * grad * grad
            denom = np.sqrt(state["exp_avg_sq"]) + self.eps
            step_size = self.lr * np.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
            final_lr = self.final_lr * self.lr / self.base_lr
            lower = final_lr * (1 - 1 / (self.gamma * state["step"] + 1))
            upper = final_lr * (1 + 1 / (self.gamma * state["step"]))
            self.params[name] = p - np.clip(step_size / denom, lower, upper) * state["exp_avg"]
        return {k: v.copy() for k, v in self.params.items()}


class PadamReference:
    """The authors' ``Padam.py`` (``Padam``, amsgrad on) on a dict of NumPy arrays, float64."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, partial=0.125, weight_decay=0.0):
        self.params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
        self.lr, self.betas, self.eps, self.partial, self.weight_decay = lr, betas, eps, partial, weight_decay
        self.state = {k: {"step": 0, "exp_avg": np.zeros_like(v), "exp_avg_sq": np.zeros_like(v),
                          "max_exp_avg_sq": np.zeros_like(v)} for k, v in self.params.items()}

    def step(self, grads):
        beta1, beta2 = self.betas
        for name, p in self.params.items():
            state, grad = self.state[name], np.array(grads[name], np.float64)
            if self.weight_decay != 0:
                grad = grad + self.weight_decay * p
            state["step"] += 1
            state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * grad
            state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * grad * grad
            state["max_exp_avg_sq"] = np.maximum(state["max_exp_avg_sq"], state["exp_avg_sq"])
            denom = np.sqrt(state["max_exp_avg_sq"]) + self.eps
            step_size = self.lr * np.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
            self.params[name] = p - step_size * state["exp_avg"] / denom ** (self.partial * 2)
        return {k: v.copy() for k, v in self.params.items()}
