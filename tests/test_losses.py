"""Losses (videomae_keras/losses.py): the pretraining loss against transformers' own, and the
smoothed cross-entropy on integer and on soft (mixup) targets."""

import numpy as np
import pytest
import torch

import keras

import reference
from videomae_keras import from_pretrained
from videomae_keras.losses import SmoothedCrossentropy


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_pretraining_loss_matches_transformers(tmp_path, norm_pix_loss, record_parity):
    config = dict(reference.SMALL, norm_pix_loss=norm_pix_loss)
    hf = reference.hf_model("pretrainer", seed=4, **config)
    hf.save_pretrained(tmp_path)
    model = from_pretrained(str(tmp_path))
    assert model.norm_pix_loss is norm_pix_loss
    pixels, video = reference.random_video(config, batch=3, seed=1)
    masks = reference.tube_masks(config, batch=3, ratio=0.9, seed=2)
    with torch.no_grad():
        expected = hf(torch.from_numpy(pixels), bool_masked_pos=torch.from_numpy(masks)).loss
    predictions = model([video, masks])
    loss = model.compute_loss(x=[video, masks], y_pred=predictions)
    diff = record_parity(f"loss (norm_pix_loss={norm_pix_loss})",
                         keras.ops.convert_to_numpy(loss), expected.numpy())
    assert diff <= 1e-5



def test_soft_targets_are_not_smoothed_twice():
    from videomae_keras.data import mixed_targets

    logits = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    labels = np.array([0, 3, 1, 4])
    loss = SmoothedCrossentropy(5, 0.1)
    soft = mixed_targets(labels, 5, 1.0, 0.1)  # lam 1: the smoothed one-hot labels
    from_ints = float(keras.ops.convert_to_numpy(loss(labels, logits)))
    from_soft = float(keras.ops.convert_to_numpy(loss(soft, logits)))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert from_ints == pytest.approx(float(-(soft * log_probs).sum(-1).mean()), rel=1e-5)
    assert from_soft == pytest.approx(from_ints, rel=1e-5)
