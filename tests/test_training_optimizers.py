"""Optimisers and the training step (videomae_keras/training/optimizers.py): AdamW with
layer-wise decay against torch.optim.AdamW with parameter groups, the schedule against the
official formula, gradient accumulation, remat, and fit() on every backend."""

import numpy as np
import pytest
import torch

import keras

from conftest import BACKEND
from videomae_keras import VideoMAEClassifier, VideoMAEPretrainer
from videomae_keras.training import (
    VideoMAEAdamW,
    WarmupCosineDecay,
    layer_decay_scales,
    pretraining_optimizer,
)
from videomae_keras.losses import SmoothedCrossentropy
from videomae_keras.training.optimizers import default_no_decay


def small_classifier():
    return VideoMAEClassifier.from_arguments(num_classes=6, num_frames=4, image_size=32, patch_size=16,
                              hidden_dim=16, depth=3, num_heads=2, mlp_dim=24)


def test_layer_decay_scales_follow_the_official_layer_ids():
    model = small_classifier()
    scales = layer_decay_scales(model, 0.5)
    depth = 3
    assert scales["encoder/patch_embed/proj/kernel"] == 0.5 ** (depth + 1)
    assert scales["encoder/blocks_0/attn/qkv/kernel"] == 0.5 ** depth
    assert scales["encoder/blocks_2/mlp/fc2/bias"] == 0.5
    assert scales["fc_norm/gamma"] == 1.0 and scales["head/kernel"] == 1.0
    decayed = [v.path for v in model.trainable_variables if not default_no_decay(v)]
    assert all(len(v.shape) > 1 for v in model.trainable_variables if v.path in decayed)
    assert "encoder/blocks_0/attn/q_bias" not in decayed and "head/kernel" in decayed


def test_adamw_matches_torch_param_groups():
    """Five steps of the same gradients: our optimiser vs torch.optim.AdamW with one
    parameter group per variable (lr * scale; weight decay 0 for the official exclusions)."""
    model = small_classifier()
    variables = model.trainable_variables
    scales = layer_decay_scales(model, 0.75)
    lr, wd = 3e-3, 0.05
    optimizer = VideoMAEAdamW(lr, weight_decay=wd, beta_1=0.9, beta_2=0.95,
                              lr_scales=scales)
    params = [torch.nn.Parameter(torch.tensor(keras.ops.convert_to_numpy(v).copy()))
              for v in variables]
    groups = [{"params": [p], "lr": lr * scales[v.path],
               "weight_decay": 0.0 if default_no_decay(v) else wd}
              for p, v in zip(params, variables)]
    torch_optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.95), eps=1e-8)
    rng = np.random.default_rng(0)
    for _ in range(5):
        grads = [rng.standard_normal(tuple(v.shape)).astype(np.float32) for v in variables]
        optimizer.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in grads],
                                      variables))
        for p, g in zip(params, grads):
            p.grad = torch.from_numpy(g)
        torch_optimizer.step()
    for variable, param in zip(variables, params):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable),
                                   param.detach().numpy(), atol=2e-6, err_msg=variable.path)


def official_cosine_scheduler(base, final, epochs, niter, warmup_epochs, start_warmup=0.0):
    warmup_iters = warmup_epochs * niter
    warmup = np.linspace(start_warmup, base, warmup_iters) if warmup_iters > 0 else np.array([])
    iters = np.arange(epochs * niter - warmup_iters)
    schedule = np.array([final + 0.5 * (base - final) * (1 + np.cos(np.pi * i / len(iters)))
                         for i in iters])
    return np.concatenate((warmup, schedule))


def test_schedule_matches_official_cosine_scheduler():
    expected = official_cosine_scheduler(1e-3, 1e-5, epochs=10, niter=7, warmup_epochs=2)
    schedule = WarmupCosineDecay(1e-3, total_steps=70, warmup_steps=14, final=1e-5)
    ours = np.array([float(keras.ops.convert_to_numpy(schedule(i))) for i in range(70)])
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-9)
    clone = WarmupCosineDecay.from_config(schedule.get_config())
    assert float(keras.ops.convert_to_numpy(clone(30))) == pytest.approx(expected[30], rel=1e-5)


def test_optimizer_serialises():
    optimizer = pretraining_optimizer(steps=100, batch_size=8, clip_grad=0.02)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, VideoMAEAdamW) and restored.beta_2 == 0.95
    assert restored.global_clipnorm == 0.02


def test_pretrainer_fits_and_learns():
    """A tiny pretrainer overfits one batch: the loss falls well below its start."""
    model = VideoMAEPretrainer.from_arguments(num_frames=4, image_size=32, patch_size=16, hidden_dim=32,
                               depth=1, num_heads=2, mlp_dim=48, decoder_hidden_dim=32,
                               decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=48,
                               mask_ratio=0.5)
    rng = np.random.default_rng(0)
    video = rng.standard_normal((4, 4, 32, 32, 3)).astype(np.float32)
    masks = np.zeros((4, model.num_tokens), bool)
    for row in masks:
        spatial = np.zeros(4, bool)
        spatial[rng.permutation(4)[:2]] = True
        row[:] = np.tile(spatial, 2)
    optimizer = VideoMAEAdamW(3e-3, weight_decay=0.0, beta_2=0.95, global_clipnorm=1.0)
    model.compile(optimizer=optimizer, jit_compile=BACKEND in ("jax", "tensorflow"))
    history = model.fit([video, masks], epochs=40, batch_size=4, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_mixed_bfloat16_training():
    """dtype="mixed_bfloat16": float32 weights, bfloat16 compute, float32 loss close to the
    float32 model's with the same weights; pretraining and fine-tuning steps stay finite."""
    kwargs = dict(num_frames=4, image_size=32, patch_size=16, hidden_dim=32, depth=1,
                  num_heads=2, mlp_dim=48, decoder_hidden_dim=32, decoder_depth=1,
                  decoder_num_heads=2, decoder_mlp_dim=48, mask_ratio=0.5)
    keras.utils.set_random_seed(0)
    full = VideoMAEPretrainer.from_arguments(**kwargs)
    mixed = VideoMAEPretrainer.from_arguments(dtype="mixed_bfloat16", **kwargs)
    mixed.set_weights(full.get_weights())
    assert all(v.dtype == "float32" for v in mixed.weights)
    assert mixed.encoder.blocks[0].attn.qkv.compute_dtype == "bfloat16"
    rng = np.random.default_rng(0)
    video = rng.standard_normal((4, 4, 32, 32, 3)).astype(np.float32)
    masks = np.zeros((4, full.num_tokens), bool)
    masks[:, [0, 1, 4, 5]] = True  # half of each slice, the same tube for every clip
    losses = {}
    for name, model in (("float32", full), ("mixed", mixed)):
        prediction = model([video, masks])
        loss = model.compute_loss([video, masks], None, prediction)
        assert keras.backend.standardize_dtype(loss.dtype) == "float32"
        losses[name] = float(keras.ops.convert_to_numpy(loss))
    assert abs(losses["mixed"] - losses["float32"]) < 0.02 * losses["float32"]
    assert losses["mixed"] != losses["float32"]  # it did compute in bfloat16
    mixed.compile(optimizer=VideoMAEAdamW(1e-3, weight_decay=0.05, beta_2=0.95),
                  jit_compile=BACKEND in ("jax", "tensorflow"))
    history = mixed.fit([video, masks], epochs=3, batch_size=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(v.dtype == "float32" for v in mixed.trainable_weights)

    classifier = VideoMAEClassifier.from_arguments(num_classes=6, num_frames=4, image_size=32, patch_size=16,
                                    hidden_dim=16, depth=2, num_heads=2, mlp_dim=24,
                                    dtype="mixed_bfloat16")
    classifier.compile(optimizer=VideoMAEAdamW(1e-3), loss=SmoothedCrossentropy(6, 0.1),
                       jit_compile=BACKEND in ("jax", "tensorflow"))
    labels = np.arange(4) % 6
    history = classifier.fit(video, labels, epochs=2, batch_size=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    logits = classifier.predict_on_batch(video)
    assert str(logits.dtype) == "float32"


# --- gradient accumulation ---------------------------------------------------------------------

def _pretrainer():
    return VideoMAEPretrainer.from_arguments(num_frames=4, image_size=32, patch_size=16, hidden_dim=16,
                              depth=2, num_heads=2, mlp_dim=24, decoder_hidden_dim=8,
                              decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=12,
                              mask_ratio=0.5)


def _clips(count=8, seed=0):
    rng = np.random.default_rng(seed)
    video = rng.standard_normal((count, 4, 32, 32, 3)).astype("float32")
    masks = np.stack([np.tile(rng.permutation([True, True, False, False]), 2)
                      for _ in range(count)]).astype("uint8")
    return video, masks


@pytest.mark.parametrize("optimizer", ["sgd", "videomae_adamw"])
def test_accumulated_steps_give_the_update_of_one_large_batch(optimizer):
    """Two accumulated batches of 4 give the update of one batch of 8 (the same 8 clips).
    AdamW is run with epsilon 1: its update then follows the gradient smoothly, where the
    default epsilon makes near-zero gradients flip sign on summation-order noise."""
    def make(accumulate):
        kwargs = {"gradient_accumulation_steps": accumulate} if accumulate > 1 else {}
        if optimizer == "sgd":
            return keras.optimizers.SGD(0.5, **kwargs)
        return VideoMAEAdamW(0.05, weight_decay=0.05, epsilon=1.0, **kwargs)

    video, masks = _clips()
    one = _pretrainer()
    start = one.get_weights()
    one.compile(optimizer=make(1))
    one.fit([video, masks], batch_size=8, epochs=2, shuffle=False, verbose=0)
    accumulated = _pretrainer()
    accumulated.set_weights(start)
    accumulated.compile(optimizer=make(2))
    accumulated.fit([video, masks], batch_size=4, epochs=2, shuffle=False, verbose=0)
    moved = max(np.abs(a - b).max() for a, b in zip(one.get_weights(), start))
    assert moved > 1e-3  # two real updates happened
    for a, b, v in zip(one.get_weights(), accumulated.get_weights(), one.weights):
        np.testing.assert_allclose(a, b, atol=1e-5, err_msg=v.path)
    assert int(keras.ops.convert_to_numpy(accumulated.optimizer.iterations)) == 2


def test_the_schedule_counts_real_updates_under_accumulation():
    plain = WarmupCosineDecay(1e-3, total_steps=20, warmup_steps=4, final=1e-5)
    accumulated = WarmupCosineDecay(1e-3, total_steps=20, warmup_steps=4, final=1e-5,
                                    accumulation_steps=3)
    for micro_step in range(60):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(accumulated(micro_step)),
                                   keras.ops.convert_to_numpy(plain(micro_step // 3)), rtol=1e-6)
    optimizer = pretraining_optimizer(20, 8 * 3, accumulate=3)
    assert optimizer.gradient_accumulation_steps == 3
    assert optimizer._learning_rate.accumulation_steps == 3
    assert WarmupCosineDecay.from_config(accumulated.get_config()).accumulation_steps == 3


# --- rematerialisation -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["classifier", "pretrainer"])
def test_remat_trains_to_the_same_weights(kind, monkeypatch):
    """Blocks recomputed in the backward pass (remat=True, with stochastic depth drawing
    masks) give the losses and, after three SGD steps, the weights of plain training; the
    blocks really went through keras.remat."""
    calls = []
    remat = keras.remat

    def counting_remat(function):
        calls.append(function)
        return remat(function)

    monkeypatch.setattr(keras, "remat", counting_remat)
    video, masks = _clips()
    labels = np.arange(8) % 3

    def train(use_remat):
        keras.utils.set_random_seed(1)
        if kind == "classifier":
            model = VideoMAEClassifier.from_arguments(num_frames=4, image_size=32, patch_size=16,
                                       hidden_dim=16, depth=2, num_heads=2, mlp_dim=24,
                                       num_classes=3, drop_path_rate=0.5, remat=use_remat)
            model.compile(optimizer=keras.optimizers.SGD(0.5),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            data = (video, labels)
        else:
            model = VideoMAEPretrainer.from_arguments(num_frames=4, image_size=32, patch_size=16,
                                       hidden_dim=16, depth=2, num_heads=2, mlp_dim=24,
                                       decoder_hidden_dim=8, decoder_depth=1,
                                       decoder_num_heads=2, decoder_mlp_dim=12,
                                       mask_ratio=0.5, drop_path_rate=0.3, remat=use_remat)
            model.compile(optimizer=keras.optimizers.SGD(0.5))
            data = ([video, masks], None)
        start = [w.copy() for w in model.get_weights()]
        history = model.fit(*data, batch_size=4, epochs=3, shuffle=False, verbose=0)
        return model, start, history.history["loss"]

    plain, plain_start, plain_loss = train(False)
    assert not calls
    recomputed, start, loss = train(True)
    assert len(calls) >= 2  # each block, traced at least once
    assert recomputed.backbone.get_config()["remat"] is True
    for a, b in zip(plain_start, start):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(loss, plain_loss, rtol=1e-5)
    moved = max(np.abs(a - b).max() for a, b in zip(plain.get_weights(), start))
    assert moved > 1e-3
    for a, b, v in zip(plain.get_weights(), recomputed.get_weights(), plain.weights):
        np.testing.assert_allclose(b, a, atol=1e-5, err_msg=v.path)


def test_remat_refuses_dropout_inside_the_blocks():
    with pytest.raises(ValueError, match="cannot recompute dropout inside the blocks"):
        VideoMAEClassifier.from_arguments(num_frames=4, image_size=32, patch_size=16, hidden_dim=16, depth=1,
                           num_heads=2, mlp_dim=24, num_classes=3, dropout_rate=0.1, remat=True)
