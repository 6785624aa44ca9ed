"""Fresh models start as the official code starts them: every weight its own draw, from the
distribution the official `_init_weights` uses (fine-tuning and pretraining models differ);
and models built for loading draw nothing."""

import re

import numpy as np
import pytest
import torch

import keras
import videomae_keras as vk
from videomae_keras.initializers import (
    BoundedTruncatedNormal,
    build_for_loading,
    fresh,
    restore_initializers,
)

# ViT-S width (large kernels give stable statistics), two blocks, a small clip.
ENCODER = dict(num_frames=4, image_size=32, patch_size=16, hidden_dim=384, depth=2, num_heads=6,
               mlp_dim=1536)
DECODER = dict(decoder_hidden_dim=192, decoder_depth=2, decoder_num_heads=3, decoder_mlp_dim=768)


def _weights(model):
    return {v.path: keras.ops.convert_to_numpy(v).astype(np.float64) for v in model.weights}


def _official_draw(path, shape, pretraining):
    """The same-shaped tensor as MCG-NJU/VideoMAE initialises it (torch, transcribed from
    `_init_weights` of modeling_finetune.py / modeling_pretrain.py)."""
    generator = torch.Generator().manual_seed(len(path))
    torch.manual_seed(len(path) + 1)
    out = torch.empty(shape[::-1] if len(shape) == 2 else shape)  # Linear weights are (out, in)
    if path.endswith("/gamma"):
        return np.ones(shape)
    if re.search(r"(/beta|_bias|/bias)$", path) and "patch_embed" not in path:
        return np.zeros(shape)
    if "patch_embed" in path:  # nn.Conv3d's own reset_parameters
        conv = torch.nn.Conv3d(3, ENCODER["hidden_dim"], (2, 16, 16))
        return (conv.weight if path.endswith("kernel") else conv.bias).detach().numpy()
    if path.endswith("mask_token"):
        torch.nn.init.trunc_normal_(out, std=0.02, a=-0.02, b=0.02, generator=generator)
    elif "encoder_to_decoder" in path:  # never re-initialised: torch's Linear default
        out = torch.nn.Linear(shape[0], shape[1], bias=False).weight
    elif pretraining:
        torch.nn.init.xavier_uniform_(out, generator=generator)
    else:
        torch.nn.init.trunc_normal_(out, std=0.02, generator=generator)  # timm: bounds +-2
        if path.startswith("head/"):
            out = out * 0.001
    return out.detach().numpy()


def _quantiles(values):
    return np.quantile(values.reshape(-1), [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99])


@pytest.mark.parametrize("pretraining", [False, True], ids=["finetuning", "pretraining"])
def test_initial_weights_follow_the_official_distributions(pretraining):
    if pretraining:
        model = vk.VideoMAEPretrainer.from_arguments(**ENCODER, **DECODER)
    else:
        model = vk.VideoMAEClassifier.from_arguments(num_classes=400, **ENCODER)
    checked = 0
    for path, ours in _weights(model).items():
        official = np.asarray(_official_draw(path, ours.shape, pretraining), np.float64)
        assert official.size == ours.size, path
        spread = official.std()
        if spread == 0:
            np.testing.assert_array_equal(ours, official.reshape(ours.shape), err_msg=path)
            continue
        # quantiles agree to a few percent of the spread (more slack for small tensors)
        tolerance = (0.05 if ours.size >= 50_000 else 0.3) * spread
        np.testing.assert_allclose(_quantiles(ours), _quantiles(official), atol=tolerance,
                                   err_msg=path)
        assert abs(ours.std() / spread - 1) < (0.03 if ours.size >= 50_000 else 0.2), path
        assert np.abs(ours).max() <= np.abs(official).max() * 1.3 + 1e-12, path
        checked += 1
    assert checked >= (12 if pretraining else 9)


@pytest.mark.parametrize("kind", ["classifier", "pretrainer"])
def test_no_two_weights_start_equal(kind):
    """One shared unseeded initialiser gave every block the same kernels (Keras draws an
    unseeded initialiser's seed once, when it is made)."""
    from videomae_keras.presets import SIZES

    TINY_ENCODER, TINY_DECODER = SIZES["tiny"].backbone, SIZES["tiny"].decoder

    args = dict(num_frames=8, image_size=32, **TINY_ENCODER)
    model = (vk.VideoMAEClassifier.from_arguments(num_classes=4, **args) if kind == "classifier"
             else vk.VideoMAEPretrainer.from_arguments(**args, **TINY_DECODER))
    random_weights = {p: w for p, w in _weights(model).items() if w.std() > 0}
    assert len(random_weights) >= 12
    by_shape = {}
    for path, value in random_weights.items():
        by_shape.setdefault(value.shape, []).append((path, value.reshape(-1)))
    pairs = 0
    for items in by_shape.values():
        for i, (path_a, a) in enumerate(items):
            for path_b, b in items[i + 1:]:
                assert not np.array_equal(a, b), (path_a, path_b)
                if a.size >= 1000:
                    assert abs(np.corrcoef(a, b)[0, 1]) < 0.1, (path_a, path_b)
                pairs += 1
    assert pairs >= 20


def test_seeded_initializers_stay_reproducible_and_distinct():
    seeded = BoundedTruncatedNormal(stddev=1.0, minval=-1.0, maxval=1.0, seed=7)
    a, b = fresh(seeded, "blocks_0"), fresh(seeded, "blocks_1")
    first = keras.ops.convert_to_numpy(a((2000,)))
    again = keras.ops.convert_to_numpy(fresh(seeded, "blocks_0")((2000,)))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, keras.ops.convert_to_numpy(b((2000,))))
    assert np.abs(first).max() <= 1.0 and 0.45 < first.std() < 0.62  # N(0,1) cut at 1 sigma: 0.54


def test_building_for_loading_draws_nothing_and_keeps_the_real_initializers():
    from videomae_keras.presets import SIZES

    TINY_ENCODER = SIZES["tiny"].backbone

    model = build_for_loading(vk.VideoMAEClassifier.from_arguments, num_classes=4, num_frames=8,
                              image_size=32, **TINY_ENCODER)
    assert all(np.isnan(keras.ops.convert_to_numpy(v)).all() for v in model.trainable_weights)
    head = model.get_layer("head")
    assert isinstance(head.kernel_initializer, BoundedTruncatedNormal)
    assert restore_initializers(model) is model
    # the same architecture built normally is finite, and a loaded copy equals its source
    source = vk.VideoMAEClassifier.from_arguments(num_classes=4, num_frames=8, image_size=32, **TINY_ENCODER)
    model.set_weights(source.get_weights())
    video = np.random.default_rng(0).normal(size=(1, 8, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(video)),
                                  keras.ops.convert_to_numpy(source(video)))
