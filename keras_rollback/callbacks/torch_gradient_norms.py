"""Squared gradient norms per variable on the torch backend (`torch.autograd.grad`, eager)."""

import torch


def squared_gradient_norms(loss_of):
    """`norms(trainable, non_trainable, x, y)`: each trainable value's squared gradient norm.

    A variable the loss does not reach gets 0.
    """

    def norms(trainable, non_trainable, x, y):
        trainable = [t.detach().requires_grad_(True) for t in trainable]
        loss = loss_of(trainable, non_trainable, x, y)
        grads = torch.autograd.grad(loss, trainable, allow_unused=True)
        return [0.0 if g is None else float(torch.sum(torch.square(g))) for g in grads]

    return norms
