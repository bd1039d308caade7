"""Squared gradient norms per variable on the TensorFlow backend (`GradientTape`, traced once)."""

import tensorflow as tf


def squared_gradient_norms(loss_of):
    """`norms(trainable, non_trainable, x, y)`: each trainable value's squared gradient norm."""

    @tf.function
    def traced_norms(trainable, non_trainable, x, y):
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            loss = loss_of(trainable, non_trainable, x, y)
        grads = tape.gradient(loss, trainable)
        return tf.stack([tf.reduce_sum(tf.square(tf.cast(g, "float32"))) for g in grads])

    def norms(trainable, non_trainable, x, y):
        trainable = [tf.convert_to_tensor(t) for t in trainable]
        non_trainable = [tf.convert_to_tensor(t) for t in non_trainable]
        return traced_norms(trainable, non_trainable, x, y)

    return norms
