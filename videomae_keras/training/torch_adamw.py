"""The torch backend's AdamW step for `VideoMAEAdamW`: the same arithmetic as its keras.ops
`update_step`, with torch's in-place kernels.

Keras runs `update_step` with out-of-place ops, which on torch allocate a fresh tensor per
operation: 1.08 s per ViT-B pretraining step against 0.21 s for torch.optim.AdamW on 2 CPU
cores. In place, one tensor at a time (so the one scratch buffer is reused), it matches
torch. Keras' own torch optimizers take the same route.
"""

import torch

from keras import ops


@torch.no_grad()
def adamw_inplace_step(optimizer, grads, variables, learning_rate):
    """One AdamW step over `variables` in torch.optim.AdamW's order of operations."""
    dtype = variables[0].value.dtype
    lr = ops.cast(learning_rate, dtype)
    step = ops.cast(optimizer.iterations + 1, dtype)
    bias_1 = 1.0 - torch.pow(torch.tensor(optimizer.beta_1, dtype=dtype), step)
    bias_2_sqrt = torch.sqrt(1.0 - torch.pow(torch.tensor(optimizer.beta_2, dtype=dtype), step))
    for grad, variable in zip(grads, variables):
        index = optimizer._get_variable_index(variable)
        param, m, v = variable.value, optimizer._m[index].value, optimizer._v[index].value
        grad = grad.to(param.dtype)
        param_lr = lr * optimizer._scale[index]
        if optimizer._decay[index]:
            param.mul_(1.0 - param_lr * optimizer._decay[index])
        m.lerp_(grad, 1.0 - optimizer.beta_1)
        v.mul_(optimizer.beta_2).addcmul_(grad, grad, value=1.0 - optimizer.beta_2)
        update = torch.sqrt(v).div_(bias_2_sqrt).add_(optimizer.epsilon)
        torch.div(m, update, out=update)
        param.add_(update.mul_(-param_lr / bias_1))
