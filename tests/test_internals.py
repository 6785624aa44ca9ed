"""`intermediates`: every block's hidden states and attention weights, against transformers'
`output_hidden_states=True, output_attentions=True` for the same random weights (eager
attention, the implementation that returns its weights)."""

import numpy as np
import pytest
import torch

import keras

import reference
import videomae_keras as vk
from videomae_keras.layers import MultiHeadSelfAttention

TOL = 1e-5


def _reference_and_ours(task, tmp_path, seed, **overrides):
    config = dict(reference.SMALL, **overrides)
    hf = reference.hf_model(task, seed=seed, attn_implementation="eager", **config)
    hf.save_pretrained(str(tmp_path / "hf"))
    return config, hf, vk.from_pretrained(str(tmp_path / "hf"))


def _hf_intermediates(hf, pixels, mask=None):
    with torch.no_grad():
        out = hf(torch.from_numpy(pixels),
                 **({} if mask is None else {"bool_masked_pos": torch.from_numpy(mask)}),
                 output_hidden_states=True, output_attentions=True)
    return [h.numpy() for h in out.hidden_states], [a.numpy() for a in out.attentions]


def _compare(record_parity, name, ours, hf_hidden, hf_attentions, depth):
    assert len(ours.hidden_states) == len(hf_hidden) == depth + 1
    assert len(ours.attentions) == len(hf_attentions) == depth
    for index, (a, b) in enumerate(zip(ours.hidden_states, hf_hidden)):
        assert record_parity(f"{name} hidden state {index}", a, b) <= TOL
    for index, (a, b) in enumerate(zip(ours.attentions, hf_attentions)):
        assert record_parity(f"{name} attention {index}", a, b) <= TOL


CASES = {  # name: (task, config overrides, masked)
    "backbone": ("backbone", dict(use_mean_pooling=False), False),
    "backbone_masked": ("backbone", dict(use_mean_pooling=False), True),
    "classifier": ("classifier", dict(num_hidden_layers=3), False),
    "pretrainer_masked": ("pretrainer", dict(use_mean_pooling=False), True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hidden_states_and_attentions_match_transformers(case, tmp_path, record_parity):
    task, overrides, masked = CASES[case]
    config, hf, model = _reference_and_ours(task, tmp_path, seed=len(case), **overrides)
    pixels, video = reference.random_video(config, batch=2, seed=1)
    mask = reference.tube_masks(config, batch=2, ratio=0.75, seed=2) if masked else None
    ours = vk.intermediates(model, video, mask)
    hf_hidden, hf_attentions = _hf_intermediates(hf, pixels, mask)
    _compare(record_parity, case, ours, hf_hidden, hf_attentions, config["num_hidden_layers"])
    visible = (~mask).sum(1)[0] if masked else model.num_tokens
    assert ours.visible_index.shape == (2, visible)
    assert ours.attentions[0].shape == (2, config["num_attention_heads"], visible, visible)
    np.testing.assert_allclose(ours.attentions[-1].sum(-1), 1.0, atol=1e-5)
    if masked:
        np.testing.assert_array_equal(ours.visible_index[0], np.flatnonzero(~mask[0]))


def test_normal_calls_keep_their_kernels_and_agree(tmp_path, monkeypatch):
    """The hidden states end where the model's own call does (a backbone without final
    norm returns the last block's output), and the normal call never takes the explicit
    softmax path that gives the weights."""
    config, _, model = _reference_and_ours("backbone", tmp_path, seed=5, use_mean_pooling=True)
    _, video = reference.random_video(config, batch=2, seed=3)
    ours = vk.intermediates(model, video)
    without = vk.intermediates(model, video, attentions=False)
    assert without.attentions == []
    for a, b in zip(ours.hidden_states, without.hidden_states):
        np.testing.assert_allclose(a, b, atol=TOL)

    def refuse(*args, **kwargs):
        raise AssertionError("a normal call took the explicit attention path")

    monkeypatch.setattr(MultiHeadSelfAttention, "call_with_weights", refuse)
    tokens = keras.ops.convert_to_numpy(model(video))
    np.testing.assert_allclose(tokens, ours.hidden_states[-1], atol=TOL)


def test_bad_inputs_get_one_clear_line(tmp_path):
    config, _, model = _reference_and_ours("backbone", tmp_path, seed=7)
    _, video = reference.random_video(config, batch=2, seed=3)
    mask = reference.tube_masks(config, batch=2, ratio=0.5, seed=2)
    uneven = mask.copy()
    uneven[1, np.flatnonzero(~uneven[1])[0]] = True
    with pytest.raises(ValueError, match="same number of tokens in every sample"):
        vk.intermediates(model, video, uneven)
    with pytest.raises(ValueError, match=r"must be \(batch, tokens\)"):
        vk.intermediates(model, video, mask[:, :-1])
    with pytest.raises(ValueError, match="Add the batch axis"):
        vk.intermediates(model, video[0])
    with pytest.raises(ValueError, match="built for clips of shape"):
        vk.intermediates(model, video[:, :2])
    with pytest.raises(ValueError, match="is not a VideoMAE model"):
        vk.intermediates(object(), video)


def test_a_video_file_gives_its_centre_clip():
    from videomae_keras.demo import demo_files

    model = vk.from_pretrained(demo_files()["classifier"])
    inside = vk.intermediates(model, vk.sample_video())
    clip = vk.extract_features(model, vk.sample_video())
    # a mean-pooling classifier has no final norm: its feature tokens are the last block's
    assert inside.hidden_states[0].shape == (1, model.num_tokens, model.architecture["hidden_dim"])
    assert len(inside.attentions) == model.architecture["depth"]
    tokens = clip.tokens[0]
    np.testing.assert_allclose(inside.hidden_states[-1][0], tokens, atol=1e-4)
