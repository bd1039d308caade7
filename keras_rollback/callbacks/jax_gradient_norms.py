"""Squared gradient norms per variable on the JAX backend (`jax.grad`, compiled once)."""

import jax
import jax.numpy as jnp


def squared_gradient_norms(loss_of):
    """`norms(trainable, non_trainable, x, y)`: each trainable value's squared gradient norm."""

    @jax.jit
    def norms(trainable, non_trainable, x, y):
        grads = jax.grad(loss_of)(trainable, non_trainable, x, y)
        return jnp.stack([jnp.sum(jnp.square(g.astype("float32"))) for g in grads])

    return norms
