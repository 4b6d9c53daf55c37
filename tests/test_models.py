"""escape.models: shapes, parameter counts, BatchNorm state, bf16 compute, one training step."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from escape.models import count_parameters, forward, resnet18, resnet34, small_resnet


_forward = eqx.filter_jit(forward)  # eager execution compiles every primitive separately: far slower


def _images(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _small_resnet_count(c_in, w, classes):
    """Hand count: 3x3 convs without bias, BatchNorm scale+shift, 1x1 projection shortcuts, linear head."""
    conv = lambda a, b, k=3: a * b * k * k + 2 * b  # conv weights + BatchNorm weight and bias
    stem = conv(c_in, w)
    block1 = 2 * conv(w, w)
    block2 = conv(w, 2 * w) + conv(2 * w, 2 * w) + conv(w, 2 * w, 1)
    block3 = conv(2 * w, 4 * w) + conv(4 * w, 4 * w) + conv(2 * w, 4 * w, 1)
    return stem + block1 + block2 + block3 + 4 * w * classes + classes


def test_resnet_parameter_counts_and_shapes():
    """Shapes only (eval_shape): the full-width models are never initialised or run here."""
    key = jax.random.key(0)
    model, state = eqx.filter_eval_shape(resnet18, 10, key=key)
    assert count_parameters(model) == 11_173_962  # the PyTorch CIFAR ResNet-18
    logits, _ = eqx.filter_eval_shape(forward, model, state, jax.ShapeDtypeStruct((2, 3, 32, 32), jnp.float32))
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    model34, _ = eqx.filter_eval_shape(resnet34, 10, key=key)
    assert count_parameters(model34) == 21_282_122
    model100, _ = eqx.filter_eval_shape(resnet18, 100, key=key)
    assert count_parameters(model100) == 11_173_962 + 512 * 90 + 90
    small, _ = eqx.filter_eval_shape(small_resnet, 10, key=key)
    assert count_parameters(small) == _small_resnet_count(1, 16, 10) == 77_754


def test_resnet18_narrow_forward_cifar_shapes(getkey):
    model, state = resnet18(10, key=getkey(), width=4)
    logits, new_state = _forward(model, state, _images((2, 3, 32, 32)), inference=False)
    assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))
    assert jax.tree.structure(new_state) == jax.tree.structure(state)


# The tests below share one small model shape and batch shape, so the jitted forward compiles once per mode.
_X = _images((8, 1, 8, 8))


def test_small_resnet_digits_shapes(getkey):
    model, state = small_resnet(10, key=getkey(), width=4)
    logits, _ = _forward(model, state, _X, inference=False)
    assert logits.shape == (8, 10) and bool(jnp.all(jnp.isfinite(logits)))
    # Integer (uint8) images are accepted and cast (traced only).
    out, _ = eqx.filter_eval_shape(forward, model, state, jax.ShapeDtypeStruct((8, 1, 8, 8), jnp.uint8))
    assert out.shape == (8, 10) and out.dtype == jnp.float32


def test_batchnorm_state_training_and_inference(getkey):
    model, state = small_resnet(10, key=getkey(), width=4)
    x = _X
    other = x.at[1:].set(_images((7, 1, 8, 8), seed=1))  # same first example, different rest of the batch
    y_train, state1 = _forward(model, state, x, inference=False)
    # Training mode updates the running statistics of every BatchNorm.
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state, state1)
    assert all(jax.tree.leaves(changed))
    # Inference mode leaves the state alone ...
    y_inf, state2 = _forward(model, state1, x, inference=True)
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), state1, state2)))
    # ... and uses it: after one step the zero-debiased running statistics are exactly that batch's
    # statistics, so inference on the same batch reproduces the training output (float32 rounding only).
    np.testing.assert_allclose(y_inf, y_train, rtol=1e-4, atol=1e-4)
    # Inference is per example; training normalises over the batch.
    y_inf_other, _ = _forward(model, state1, other, inference=True)
    np.testing.assert_allclose(y_inf_other[0], y_inf[0], rtol=1e-6, atol=1e-6)
    y_train_other, _ = _forward(model, state, other, inference=False)
    assert not np.allclose(y_train_other[0], y_train[0], atol=1e-3)
    # A second step moves the running statistics to the average of the two batches' statistics.
    _, state3 = _forward(model, state1, other, inference=False)
    y_after_two, _ = _forward(model, state3, x, inference=True)
    assert not np.allclose(y_after_two, y_inf, atol=1e-3)
    # eqx.nn.inference_mode is honoured when no flag is passed.
    y_mode, _ = _forward(eqx.nn.inference_mode(model), state1, x)
    np.testing.assert_allclose(y_mode, y_inf, rtol=1e-6, atol=1e-6)


def test_bf16_compute_keeps_float32_params_and_grads(getkey):
    key = getkey()
    model32, state = small_resnet(10, key=key, width=4)
    model16, _ = small_resnet(10, key=key, width=4, compute_dtype=jnp.bfloat16)
    assert {a.dtype for a in jax.tree.leaves(eqx.filter(model16, eqx.is_array))} == {jnp.dtype(jnp.float32)}
    y32, _ = _forward(model32, state, _X, inference=False)
    y16, _ = _forward(model16, state, _X, inference=False)
    assert y16.dtype == jnp.float32
    # bf16 keeps 8 significant bits (unit roundoff 2^-8 = 0.4%); seven conv layers, each renormalised by
    # BatchNorm, accumulate a few of those: 5% of the logit scale bounds it.
    scale = float(jnp.max(jnp.abs(y32)))
    err = float(jnp.max(jnp.abs(y16 - y32)))
    assert 0 < err < 0.05 * scale, (err, scale)  # > 0: bf16 really ran
    jaxpr = str(jax.make_jaxpr(lambda x: forward(model16, state, x, inference=False)[0])(_X))
    assert "conv_general_dilated" in jaxpr and "bf16[" in jaxpr
    loss = lambda m: jnp.sum(forward(m, state, _X, inference=False)[0])
    grads = eqx.filter_eval_shape(eqx.filter_grad(loss), model16)  # dtypes only: traced, not run
    assert {a.dtype for a in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}


def test_training_steps_with_optax_decrease_loss(getkey):
    """The pattern a training loop uses: filter_jit, filter_value_and_grad with state aux, optax update."""
    model, state = small_resnet(10, key=getkey(), width=4)
    x = _X
    y = jnp.asarray(np.random.default_rng(0).integers(0, 10, 8), jnp.int32)
    opt = optax.sgd(0.1, momentum=0.9)
    opt_state = opt.init(eqx.filter(model, eqx.is_inexact_array))

    def loss_fn(m, s, x, y):
        logits, s = forward(m, s, x, inference=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), s

    @eqx.filter_jit
    def step(m, s, o, x, y):
        (loss, s), g = eqx.filter_value_and_grad(loss_fn, has_aux=True)(m, s, x, y)
        updates, o = opt.update(g, o, eqx.filter(m, eqx.is_inexact_array))
        return eqx.apply_updates(m, updates), s, o, loss

    losses = []
    for _ in range(10):
        model, state, opt_state, loss = step(model, state, opt_state, x, y)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses


def test_constructor_validation(getkey):
    with pytest.raises(ValueError, match="width"):
        small_resnet(10, key=getkey(), width=0)
    with pytest.raises(ValueError, match="num_classes"):
        resnet18(0, key=getkey(), width=2)


def test_forward_under_explicit_data_sharding(getkey):
    """Data parallelism: batch sharded over a mesh axis, model and state replicated on the mesh (needed under
    jax's default Explicit axes, where eqx.nn.State.set rejects updates whose type carries another sharding)."""
    mesh = jax.make_mesh((len(jax.devices()),), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    model, state = small_resnet(10, key=getkey(), width=4)
    y_ref, s_ref = _forward(model, state, _X, inference=False)
    params, static = eqx.partition(model, eqx.is_array)
    model_r = eqx.combine(jax.device_put(params, replicated), static)
    state_r = jax.device_put(state, replicated)
    x = jax.device_put(_X, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
    y, s = _forward(model_r, state_r, x, inference=False)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), s, s_ref)
