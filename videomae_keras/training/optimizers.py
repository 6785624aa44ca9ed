"""AdamW, learning-rate schedules and layer-wise decay as the official VideoMAE recipes use them.

`VideoMAEAdamW` follows torch.optim.AdamW step for step (decoupled weight decay multiplied by
the learning rate, bias corrections, epsilon added after the square root), with two things
torch gets from parameter groups: a learning-rate scale per variable (layer-wise decay) and
no weight decay on 1-D variables (biases, norms, q/v biases) and the mask token. On torch
the step runs in place (`torch_adamw.py`), the same arithmetic.
"""

import math
import re

import keras
from keras import ops

NO_DECAY_NAMES = ("mask_token", "pos_embed", "cls_token")


def default_no_decay(variable):
    """Official rule: no weight decay for 1-D parameters, biases and the position/mask tokens."""
    name = variable.path.rsplit("/", 1)[-1]
    return len(variable.shape) <= 1 or name.endswith("bias") or name in NO_DECAY_NAMES


@keras.saving.register_keras_serializable(package="videomae_keras")
class VideoMAEAdamW(keras.optimizers.Optimizer):
    """AdamW (torch semantics) with per-variable learning-rate scales and decay exclusions.

    Args:
        learning_rate: a float or a schedule (e.g. `WarmupCosineDecay`).
        weight_decay: decoupled decay (official 0.05), applied as w -= lr * scale * wd * w.
        beta_1, beta_2, epsilon: Adam moments (pretraining 0.9/0.95, fine-tuning 0.9/0.999).
        lr_scales: {variable path: scale}, e.g. from `layer_decay_scales`; default 1.
        no_decay: variable paths without weight decay; default `default_no_decay`.
        **kwargs: base optimizer options, e.g. global_clipnorm (official clip_grad).
    """

    def __init__(self, learning_rate=1e-3, weight_decay=0.05, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, lr_scales=None, no_decay=None, name="videomae_adamw", **kwargs):
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.decay_rate = float(weight_decay)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self.lr_scales = {str(k): float(v) for k, v in (lr_scales or {}).items()}
        self.no_decay = None if no_decay is None else sorted(str(p) for p in no_decay)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._m, self._v, self._scale, self._decay = [], [], [], []
        excluded = None if self.no_decay is None else set(self.no_decay)
        for variable in variables:
            self._m.append(self.add_variable_from_reference(variable, "m"))
            self._v.append(self.add_variable_from_reference(variable, "v"))
            self._scale.append(self.lr_scales.get(variable.path, 1.0))
            skip = default_no_decay(variable) if excluded is None else variable.path in excluded
            self._decay.append(0.0 if skip else self.decay_rate)

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype) * self._scale[index]
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        m, v = self._m[index], self._v[index]
        if self._decay[index]:
            self.assign(variable, variable * (1.0 - lr * self._decay[index]))
        self.assign(m, m + (gradient - m) * (1.0 - self.beta_1))
        self.assign(v, v * self.beta_2 + ops.square(gradient) * (1.0 - self.beta_2))
        step_size = lr / (1.0 - ops.power(ops.cast(self.beta_1, dtype), step))
        correction = ops.sqrt(1.0 - ops.power(ops.cast(self.beta_2, dtype), step))
        denominator = ops.sqrt(v) / correction + self.epsilon
        self.assign_sub(variable, step_size * m / denominator)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # torch runs update_step out of place, a fresh tensor per operation, five times slower
        # than in place; jax and tensorflow fuse update_step under XLA.
        if keras.backend.backend() == "torch":
            from videomae_keras.training.torch_adamw import adamw_inplace_step

            return adamw_inplace_step(self, grads, trainable_variables, learning_rate)
        return super()._backend_update_step(grads, trainable_variables, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(weight_decay=self.decay_rate, beta_1=self.beta_1, beta_2=self.beta_2,
                      epsilon=self.epsilon, lr_scales=self.lr_scales, no_decay=self.no_decay)
        return config


@keras.saving.register_keras_serializable(package="videomae_keras")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from `warmup_start` to `base` over `warmup_steps`, then a cosine to
    `final` at `total_steps` (official `cosine_scheduler`, per step).

    Steps count optimizer updates. With gradient accumulation Keras hands the schedule its
    micro-steps; `accumulation_steps` (the optimizer's `gradient_accumulation_steps`)
    converts them, so the schedule follows the real updates.
    """

    def __init__(self, base, total_steps, warmup_steps=0, final=1e-6, warmup_start=0.0,
                 accumulation_steps=1):
        self.base, self.final, self.warmup_start = float(base), float(final), float(warmup_start)
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)
        self.accumulation_steps = int(accumulation_steps or 1)
        if self.total_steps <= self.warmup_steps:
            raise ValueError("total_steps must exceed warmup_steps.")
        if self.accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be at least 1; got {accumulation_steps}.")

    def __call__(self, step):
        if self.accumulation_steps > 1:
            step = ops.floor_divide(step, self.accumulation_steps)
        step = ops.cast(step, "float32")
        warm = max(self.warmup_steps, 1)
        # official: np.linspace(start, base, warmup_steps)[i] = start + (base-start)*i/(w-1)
        ramp = self.warmup_start + (self.base - self.warmup_start) * step / max(warm - 1, 1)
        decay_steps = self.total_steps - self.warmup_steps
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = self.final + 0.5 * (self.base - self.final) * (
            1.0 + ops.cos(math.pi * progress))
        if self.warmup_steps == 0:
            return cosine
        return ops.where(step < self.warmup_steps, ramp, cosine)

    def get_config(self):
        config = dict(base=self.base, total_steps=self.total_steps,
                      warmup_steps=self.warmup_steps, final=self.final,
                      warmup_start=self.warmup_start)
        if self.accumulation_steps > 1:
            config["accumulation_steps"] = self.accumulation_steps
        return config


def layer_decay_scales(model, decay=0.75):
    """{variable path: decay ** (L + 1 - layer id)}: layer 0 for the patch embedding (and
    mask token), i + 1 for encoder block i, L + 1 for everything after the blocks."""
    depth = model.architecture["depth"]
    scales = {}
    for variable in model.trainable_variables:
        path = variable.path
        match = re.search(r"(?:^|/)encoder/blocks_(\d+)/", path)
        if match:
            layer = int(match.group(1)) + 1
        elif re.search(r"(?:^|/)encoder/patch_embed/", path) or path.endswith("mask_token"):
            layer = 0
        else:
            layer = depth + 1
        scales[path] = decay ** (depth + 1 - layer)
    return scales


def scaled_learning_rate(base_lr, batch_size):
    """The official linear scaling rule: base_lr * total batch / 256."""
    return base_lr * batch_size / 256.0


def _accumulation(accumulate):
    """Optimizer keyword arguments for gradient accumulation over `accumulate` batches."""
    accumulate = int(accumulate or 1)
    if accumulate < 1:
        raise ValueError(f"accumulate must be at least 1; got {accumulate}.")
    return {"gradient_accumulation_steps": accumulate} if accumulate > 1 else {}


def pretraining_optimizer(steps, batch_size, base_lr=1.5e-4, warmup_steps=None,
                          min_lr=1e-5, weight_decay=0.05, clip_grad=None, accumulate=1):
    """AdamW (0.9, 0.95), wd 0.05, lr base * batch / 256, warm-up then cosine (official
    pretraining; warm-up defaults to 40/800 of the run).

    `steps` and `warmup_steps` count optimizer updates and `batch_size` is the batch of one
    update: with `accumulate` N (gradients of N batches averaged into each update, Keras'
    `gradient_accumulation_steps`) that is N times the batch fed at a time.
    """
    lr = scaled_learning_rate(base_lr, batch_size)
    warmup = int(steps * 40 / 800) if warmup_steps is None else int(warmup_steps)
    kwargs = {"global_clipnorm": clip_grad} if clip_grad else {}
    kwargs.update(_accumulation(accumulate))
    schedule = WarmupCosineDecay(lr, steps, warmup, min(min_lr, lr),
                                 accumulation_steps=accumulate)
    return VideoMAEAdamW(schedule, weight_decay=weight_decay, beta_1=0.9, beta_2=0.95,
                         **kwargs)


def finetuning_optimizer(model, steps, batch_size, base_lr=1e-3, layer_decay=0.75,
                         warmup_steps=None, min_lr=1e-6, weight_decay=0.05, clip_grad=None,
                         accumulate=1):
    """AdamW (0.9, 0.999), wd 0.05, layer-wise lr decay, lr base * batch / 256, warm-up then
    cosine (official fine-tuning; warm-up defaults to 5/100 of the run). `steps`,
    `batch_size` and `accumulate` as in `pretraining_optimizer`."""
    lr = scaled_learning_rate(base_lr, batch_size)
    warmup = int(steps * 5 / 100) if warmup_steps is None else int(warmup_steps)
    kwargs = {"global_clipnorm": clip_grad} if clip_grad else {}
    kwargs.update(_accumulation(accumulate))
    scales = layer_decay_scales(model, layer_decay) if layer_decay < 1.0 else None
    schedule = WarmupCosineDecay(lr, steps, warmup, min(min_lr, lr),
                                 accumulation_steps=accumulate)
    return VideoMAEAdamW(schedule, weight_decay=weight_decay, beta_1=0.9, beta_2=0.999,
                         lr_scales=scales, **kwargs)
