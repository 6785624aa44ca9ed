"""VideoMAE V2 dual masking (`VideoMAEPretrainer(decoder_mask_ratio=...)`): the decoder
output and the weighted loss against the official V2 forward written in PyTorch on
transformers' modules, the V1 limit, fit(), saving and the clip data set's decoder masks."""

import numpy as np
import pytest
import torch
from transformers.utils.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

import keras

import reference
import videomae_keras as vk
from conftest import BACKEND
from videomae_keras.checkpoints.export import input_specs

TOL = 1e-5
TINY = dict(num_frames=4, image_size=32, patch_size=8, depth=1, hidden_dim=48, num_heads=4,
            mlp_dim=64, decoder_hidden_dim=24, decoder_depth=1, decoder_num_heads=3,
            decoder_mlp_dim=32)
GRID = (2, 4, 4)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _masks(batch, ratio=0.5, seed=0):
    generator = vk.TubeMaskingGenerator(GRID, ratio, seed=seed)
    return np.stack([generator() for _ in range(batch)]).astype(bool)


def _decoder_masks(batch, ratio=0.5, start=1):
    """Running-cell maps (True = not decoded), a different one for each of four samples."""
    maps = vk.RunningCellMaskingGenerator(GRID, ratio).all_mask_maps.astype(bool)
    return maps[[(start + i) % 4 for i in range(batch)]]


def _video(batch, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 4, 32, 32, 3)).astype("float32")


# --- the official V2 forward and loss, in PyTorch on transformers' modules ------------------

def torch_patches(pixels, config):
    """(B, N, t * p * p * C) loss targets as transformers computes them (B, T, C, H, W)."""
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN)[None, None, :, None, None]
    std = torch.tensor(IMAGENET_DEFAULT_STD)[None, None, :, None, None]
    frames = pixels * std + mean
    b, t, c, h, w = frames.shape
    tube, p = config.tubelet_size, config.patch_size
    frames = frames.view(b, t // tube, tube, c, h // p, p, w // p, p)
    frames = frames.permute(0, 1, 4, 6, 2, 5, 7, 3).reshape(b, -1, tube * p * p, c)
    if config.norm_pix_loss:
        frames = (frames - frames.mean(dim=-2, keepdim=True)) / (
            frames.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    return frames.reshape(b, frames.shape[1], -1)


def v2_reference(hf, pixels, mask, decode_mask):
    """OpenGVLab/VideoMAEv2 `PretrainVisionTransformer.forward(x, mask, decode_mask)` and
    `engine_for_pretraining` loss, with the encoder and decoder of a transformers model."""
    pixels, mask = torch.from_numpy(pixels), torch.from_numpy(mask)
    decode_vis = ~torch.from_numpy(decode_mask)
    with torch.no_grad():
        x_vis = hf.encoder_to_decoder(hf.videomae(pixels, bool_masked_pos=mask).last_hidden_state)
        b, _, c = x_vis.shape
        pos = hf.position_embeddings.expand(b, -1, -1).type_as(x_vis)
        pos_vis = pos[~mask].reshape(b, -1, c)
        pos_decode = pos[decode_vis].reshape(b, -1, c)
        x = torch.cat([x_vis + pos_vis, hf.mask_token + pos_decode], dim=1)
        outputs = hf.decoder(x, pos_decode.shape[1]).logits
        labels = torch_patches(pixels, hf.config)[decode_vis].reshape(b, -1, outputs.shape[-1])
        loss = ((outputs - labels) ** 2).mean(dim=-1)
        weights = mask[decode_vis].reshape(b, -1)
        loss = (loss * weights).sum() / weights.sum()
    return outputs.numpy(), loss.numpy()


def test_reference_reduces_to_transformers_without_decoder_mask():
    """The hand-built reference itself: decode_mask = ~mask is transformers' V1 forward."""
    config = dict(reference.SMALL, use_mean_pooling=False)
    hf = reference.hf_model("pretrainer", seed=21, **config)
    pixels, _ = reference.random_video(config, batch=2, seed=3)
    mask = reference.tube_masks(config, batch=2, ratio=0.75, seed=4)
    outputs, loss = v2_reference(hf, pixels, mask, ~mask)
    with torch.no_grad():
        expected = hf(torch.from_numpy(pixels), bool_masked_pos=torch.from_numpy(mask))
    np.testing.assert_allclose(outputs, expected.logits.numpy(), atol=1e-6)
    np.testing.assert_allclose(loss, expected.loss.numpy(), rtol=1e-6)


@pytest.mark.parametrize("decoder_ratio, norm_pix_loss", [(0.5, True), (0.25, False)])
def test_matches_official_v2_forward_and_loss(decoder_ratio, norm_pix_loss, tmp_path,
                                              record_parity):
    config = dict(reference.SMALL, use_mean_pooling=False, norm_pix_loss=norm_pix_loss)
    hf = reference.hf_model("pretrainer", seed=22, **config)
    hf.save_pretrained(tmp_path)
    pixels, video = reference.random_video(config, batch=3, seed=5)
    mask = reference.tube_masks(config, batch=3, ratio=0.75, seed=6)
    decode_mask = _decoder_masks(3, decoder_ratio)
    model = vk.from_pretrained(str(tmp_path), num_masked=int(mask[0].sum()),
                               decoder_mask_ratio=decoder_ratio)
    assert model.num_decoded == int((~decode_mask[0]).sum()) == {0.5: 16, 0.25: 24}[decoder_ratio]
    weights = mask[~decode_mask]
    assert 0 < weights.sum() < weights.size  # visible tokens are decoded too, loss-free

    expected, expected_loss = v2_reference(hf, pixels, mask, decode_mask)
    predictions = model([video, mask, decode_mask])
    assert record_parity(f"V2 predictions (decoder ratio {decoder_ratio})", predictions,
                         expected) <= TOL
    loss = model.compute_loss(x=[video, mask, decode_mask], y_pred=predictions)
    assert record_parity(f"V2 loss (norm_pix_loss={norm_pix_loss})", loss,
                         expected_loss) <= TOL


def test_decoding_exactly_the_masked_tokens_is_videomae_v1():
    plain = vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.5, **TINY)
    dual = vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.5, decoder_mask_ratio=0.5, **TINY)
    dual.set_weights(plain.get_weights())  # the same weights: dual masking adds none
    assert dual.num_masked == dual.num_decoded == 16
    video, mask = _video(2), _masks(2)
    v1 = plain([video, mask])
    v2 = dual([video, mask, ~mask])
    np.testing.assert_allclose(_np(v2), _np(v1), atol=1e-6)
    v1_loss = plain.compute_loss(x=[video, mask], y_pred=v1)
    v2_loss = dual.compute_loss(x=[video, mask, ~mask], y_pred=v2)
    assert float(_np(v2_loss)) == pytest.approx(float(_np(v1_loss)), rel=1e-6)
    # A running-cell mask decodes other tokens: another output, another loss.
    other = dual([video, mask, _decoder_masks(2)])
    assert not np.allclose(_np(other), _np(v2))


def test_ratio_zero_keeps_the_two_input_model():
    model = vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.5, **TINY)
    assert model.num_decoded is None and model.get_config()["decoder_mask_ratio"] == 0.0
    assert [t.name for t in model.inputs] == ["video", "bool_masked_pos"]
    assert model.input_names == ["video", "bool_masked_pos"]


def test_bad_decoder_masks_are_explained():
    model = vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.5, decoder_mask_ratio=0.5, **TINY)
    video, mask, decode_mask = _video(2), _masks(2), _decoder_masks(2)
    with pytest.raises(ValueError, match="decoder_mask"):
        model([video, mask])
    with pytest.raises(ValueError, match=r"decoder_mask must have shape \(batch, 32\)"):
        model([video, mask, decode_mask[:, :30]])
    decode_mask[1, np.flatnonzero(~decode_mask[1])[0]] = True
    with pytest.raises(ValueError, match=r"exactly 16 of 32 tokens decoded.*sample 1: 15"):
        model([video, mask, decode_mask])
    with pytest.raises(ValueError, match="even"):
        vk.VideoMAEPretrainer.from_arguments(decoder_mask_ratio=0.5, **dict(TINY, image_size=24))
    with pytest.raises(ValueError, match="0.25 <= mask_ratio < 1"):
        vk.VideoMAEPretrainer.from_arguments(decoder_mask_ratio=0.2, **TINY)


@pytest.mark.skipif(BACKEND == "torch", reason="XLA jit: jax and tensorflow")
def test_wrong_decoder_mask_under_jit_poisons_only_that_sample():
    model = vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.5, decoder_mask_ratio=0.5, **TINY)
    video, mask, decode_mask = _video(2), _masks(2), _decoder_masks(2)
    good = _np(model([video, mask, decode_mask]))
    decode_mask[0, np.flatnonzero(decode_mask[0])[0]] = False  # 17 decoded instead of 16
    model.compile(jit_compile=True)
    out = model.predict([video, mask, decode_mask], verbose=0)
    assert np.isnan(out[0]).all()
    np.testing.assert_allclose(out[1], good[1], atol=1e-5)


def test_fit_trains_a_dual_masking_pretrainer():
    model = vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.75, decoder_mask_ratio=0.5, **TINY)
    video = _video(4, seed=1)
    # uint8 0/1 masks, as VideoClipDataset yields them
    mask = _masks(4, 0.75).astype(np.uint8)
    decode_mask = _decoder_masks(4).astype(np.uint8)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                  jit_compile=BACKEND in ("jax", "tensorflow"))
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit([video, mask, decode_mask], epochs=3, batch_size=2, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 3 and np.all(np.isfinite(losses)), losses
    after = [np.array(w) for w in model.trainable_weights]
    changed = [not np.array_equal(a, b) for a, b in zip(before, after)]
    assert all(changed), [w.path for w, c in zip(model.trainable_weights, changed) if not c]


def test_config_and_keras_file_round_trip(tmp_path):
    model = vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.75, decoder_mask_ratio=0.5, **TINY)
    config = model.get_config()
    assert config["decoder_mask_ratio"] == 0.5
    clone = vk.VideoMAEPretrainer.from_config(config)
    assert clone.num_decoded == model.num_decoded == 16 and clone.get_config() == config
    inputs = [_video(2), _masks(2, 0.75), _decoder_masks(2)]
    expected = _np(model(inputs))
    path = str(tmp_path / "dual.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is vk.VideoMAEPretrainer and restored.get_config() == config
    np.testing.assert_array_equal(_np(restored(inputs)), expected)
    # dict inputs by name give the same result; export signatures name the third input
    named = dict(zip(restored.input_names, inputs))
    np.testing.assert_array_equal(_np(restored(named)), expected)
    assert [spec[0] for spec in input_specs(restored)] == restored.input_names


@pytest.mark.backend_independent
def test_clip_data_set_yields_decoder_masks(tmp_path):
    from videomae_keras.data import VideoClipDataset, make_synthetic_dataset, read_annotations

    lists = make_synthetic_dataset(tmp_path, train_per_class=1, val_per_class=0, frames=16,
                                   height=32, width=32, seed=0)
    samples = read_annotations(lists["train"])
    data = VideoClipDataset(samples, "pretrain", 4, 32, 2, sampling_rate=2, seed=0,
                            mask_generator=vk.TubeMaskingGenerator(GRID, 0.75),
                            decoder_mask_generator=vk.RunningCellMaskingGenerator(GRID, 0.5))
    plain = VideoClipDataset(samples, "pretrain", 4, 32, 2, sampling_rate=2, seed=0,
                             mask_generator=vk.TubeMaskingGenerator(GRID, 0.75))
    (video, mask, decode_mask), = data[0]
    assert decode_mask.shape == (2, 32) and decode_mask.dtype == np.uint8
    assert set((1 - decode_mask).sum(1)) == {16}
    maps = {tuple(m) for m in vk.RunningCellMaskingGenerator(GRID, 0.5).all_mask_maps}
    assert all(tuple(m) in maps for m in decode_mask)
    (plain_video, plain_mask), = plain[0]  # decoder masks are drawn after the rest
    np.testing.assert_array_equal(video, plain_video)
    np.testing.assert_array_equal(mask, plain_mask)


def test_flop_count_decodes_fewer_tokens():
    from videomae_keras import flops

    plain = vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.75, **TINY).arguments()
    dual = vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.75, decoder_mask_ratio=0.5, **TINY).arguments()
    assert flops.count(dual)["params"] == flops.count(plain)["params"]
    decoder_flops = flops._block_flops  # the decoder runs on 8 visible + 16 decoded tokens
    dec, mlp, out = TINY["decoder_hidden_dim"], TINY["decoder_mlp_dim"], 3 * 2 * 8 * 8
    saved = (decoder_flops(32, dec, mlp) - decoder_flops(24, dec, mlp)) + (24 - 16) * dec * out
    assert flops.count(plain)["flops"] - flops.count(dual)["flops"] == saved
