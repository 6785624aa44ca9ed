"""convert/transformers.py: one key table read both ways, and the config mapping both ways,
checked against transformers' own models and configs."""

import numpy as np
import pytest

from tests import reference
from videomae_keras.convert import transformers as hf_format
from videomae_keras.convert.keymap import keras_weight_map
from videomae_keras.convert.loading import arguments_for_task, build_model, infer_architecture


def _numpy_state(model):
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("task", ["classifier", "pretrainer", "backbone"])
def test_keys_go_to_canonical_and_back_unchanged(task):
    """transformers' real state dict -> canonical -> transformers gives every key and tensor
    back: the reverse map is the forward one read backwards."""
    model = reference.hf_model(task, seed=3, **reference.SMALL)
    state = _numpy_state(model)
    canonical = hf_format.to_canonical(state)
    assert "blocks.0.attn.qkv.weight" in canonical and "patch_embed.proj.weight" in canonical
    assert not any(k.startswith(("videomae.", "encoder.layer")) for k in canonical)
    if task == "pretrainer":
        assert "decoder.blocks.0.mlp.fc2.weight" in canonical
    kept = {k: v for k, v in canonical.items() if not k.endswith(".attn.k_bias")}
    # every canonical name is one that the Keras model of this architecture fills
    natural, arguments = infer_architecture(kept, "transformers", model.config.to_dict())
    keras_model = build_model(task, arguments_for_task(arguments, task))
    assert set(kept) == set(keras_weight_map(keras_model))
    back = hf_format.from_canonical(kept, task)
    dropped = {k for k in state if k.endswith("attention.key.bias")}
    assert set(back) == set(state) - dropped
    for key, value in back.items():
        np.testing.assert_array_equal(value, state[key], err_msg=key)


@pytest.mark.parametrize("task", ["classifier", "pretrainer"])
def test_config_to_arguments_and_back(task):
    import transformers

    config = reference.hf_config(**dict(reference.SMALL, num_labels=5,
                                        use_mean_pooling=task == "classifier"))
    arguments = hf_format.config_to_arguments(config.to_dict(), task)
    assert arguments["num_heads"] == config.num_attention_heads
    assert arguments["layer_norm_epsilon"] == config.layer_norm_eps
    # the sizes config.json does not need (the tensors give them), as the model would have them
    arguments.update(patch_size=config.patch_size, tubelet_size=config.tubelet_size,
                     num_channels=config.num_channels, hidden_dim=config.hidden_size,
                     depth=config.num_hidden_layers, mlp_dim=config.intermediate_size,
                     qv_bias=True, use_mean_pooling=config.use_mean_pooling,
                     num_classes=5, decoder_hidden_dim=config.decoder_hidden_size,
                     decoder_depth=config.decoder_num_hidden_layers,
                     decoder_mlp_dim=config.decoder_intermediate_size,
                     use_final_norm=not config.use_mean_pooling)
    again = transformers.VideoMAEConfig(**hf_format.arguments_to_config(arguments, task))
    fields = ["image_size", "patch_size", "num_frames", "tubelet_size", "hidden_size",
              "num_hidden_layers", "num_attention_heads", "intermediate_size", "layer_norm_eps",
              "use_mean_pooling"]
    if task == "pretrainer":
        fields += ["decoder_hidden_size", "decoder_num_hidden_layers",
                   "decoder_num_attention_heads", "decoder_intermediate_size"]
    else:
        fields += ["num_labels"]
    for field in fields:
        assert getattr(again, field) == getattr(config, field), field
