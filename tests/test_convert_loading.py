"""from_pretrained / load_pytorch_weights: errors name the problem, strict loads change nothing
when they fail, and task overrides load what fits."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import keras
import reference
import videomae_keras as vk
from videomae_keras.convert import CheckpointError, to_canonical

SMALL = dict(reference.SMALL)


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "classifier"
    reference.hf_model("classifier", seed=31, **SMALL).save_pretrained(str(folder))
    return str(folder)


def _weights(model):
    return [np.array(keras.ops.convert_to_numpy(w)) for w in model.weights]


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="Checkpoint not found.*official .pth"):
        vk.from_pretrained(str(tmp_path / "nope.pth"))


def test_folder_without_weights(tmp_path):
    with pytest.raises(CheckpointError, match="without transformers weights"):
        vk.from_pretrained(str(tmp_path))


def test_unknown_file_type(tmp_path):
    path = tmp_path / "weights.txt"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="Unknown checkpoint file type"):
        vk.from_pretrained(str(path))


@pytest.mark.parametrize("name", ["broken.pth", "broken.safetensors"])
def test_corrupt_files(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="Cannot read"):
        vk.from_pretrained(str(path))


def test_unknown_layout(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)}, path)
    with pytest.raises(CheckpointError, match="Unknown checkpoint layout.*conv1.weight"):
        vk.from_pretrained(str(path))


def test_no_tensors(tmp_path):
    path = tmp_path / "empty.pth"
    torch.save({"model": {}, "epoch": 3}, path)
    with pytest.raises(CheckpointError, match="holds no tensors"):
        vk.from_pretrained(str(path))


def test_unknown_width_needs_num_heads(tmp_path):
    hf = reference.hf_model("classifier", seed=32, **SMALL)
    path = str(tmp_path / "w.safetensors")
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, path)
    with pytest.raises(ValueError, match="48-wide encoder; pass num_heads="):
        vk.from_pretrained(path, num_frames=4, image_size=32)


def test_strict_load_lists_every_problem_and_changes_nothing(tmp_path, hf_folder):
    model = vk.VideoMAEClassifier.from_arguments(
        num_classes=3, num_frames=4, image_size=32, patch_size=8, hidden_dim=48, depth=3,
        num_heads=4, mlp_dim=37,
    )
    before = _weights(model)
    state = vk.read_checkpoint(hf_folder).state
    state = {k: v for k, v in state.items() if "layer.1.layernorm_after" not in k}
    state["videomae.extra.weight"] = np.zeros(3, "float32")
    path = str(tmp_path / "edited.safetensors")
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, path)
    with pytest.raises(ValueError) as error:
        vk.load_pytorch_weights(model, path)
    message = str(error.value)
    assert "missing in the checkpoint" in message and "blocks.2.attn.qkv.weight" in message
    assert "blocks.1.norm2.weight" in message
    assert "unused from the checkpoint (1): extra.weight" in message
    assert "shape mismatches (2)" in message and "head.weight: checkpoint (7, 48), model needs (3, 48)" in message
    for a, b in zip(before, _weights(model)):
        np.testing.assert_array_equal(a, b)


def test_non_strict_load_reports_and_loads_the_rest(hf_folder):
    model = vk.VideoMAEClassifier.from_arguments(
        num_classes=3, num_frames=4, image_size=32, patch_size=8, hidden_dim=48, depth=2,
        num_heads=4, mlp_dim=37,
    )
    head_before = np.array(keras.ops.convert_to_numpy(model.get_layer("head").kernel))
    report = vk.load_pytorch_weights(model, hf_folder, strict=False)
    assert [k for k, _, _ in report.mismatched] == ["head.bias", "head.weight"]
    assert report.missing == [] and report.unexpected == []
    np.testing.assert_array_equal(model.get_layer("head").kernel, head_before)
    state, _, _ = to_canonical(vk.read_checkpoint(hf_folder).state)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.encoder.blocks[0].attn.q_bias), state["blocks.0.attn.q_bias"]
    )


def test_task_override_builds_a_backbone_from_a_classifier(hf_folder, record_parity):
    model = vk.from_pretrained(hf_folder, task="backbone")
    assert isinstance(model, vk.VideoMAEBackbone)
    assert sorted(model.load_report.unexpected) == ["fc_norm.bias", "fc_norm.weight",
                                                    "head.bias", "head.weight"]
    hf = reference.hf_model("classifier", seed=31, **SMALL)
    pixels, video = reference.random_video(SMALL, seed=33)
    with torch.no_grad():
        tokens = hf.videomae(torch.from_numpy(pixels)).last_hidden_state.numpy()
    assert record_parity("tokens", model(video), tokens) <= 1e-5
    with pytest.raises(ValueError, match="task must be one of"):
        vk.from_pretrained(hf_folder, task="detector")


def test_overrides_reach_the_model(hf_folder):
    model = vk.from_pretrained(hf_folder, drop_path_rate=0.2, num_frames=8, dtype="float32")
    assert model.arguments()["drop_path_rate"] == 0.2
    assert model.video_shape == (8, 32, 32, 3)


def test_classifiers_saved_before_class_names_existed_still_load(tmp_path):
    """`.keras` files of earlier releases have no class_names in their config: they load as
    before (no names), with the same outputs as the shipped file that has them."""
    import json
    import zipfile

    import keras

    from videomae_keras.demo import demo_files

    shipped = demo_files()["classifier"]
    old = tmp_path / "earlier_release.keras"
    with zipfile.ZipFile(shipped) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                assert config["config"].pop("class_names") == [
                    "moving right", "moving left", "moving down", "moving up"]
                data = json.dumps(config).encode()
            target.writestr(item, data)
    earlier = keras.saving.load_model(old, safe_mode=True)
    assert earlier.class_names is None and vk.from_pretrained(str(old)).class_names is None
    current = vk.from_pretrained(shipped)
    video = np.random.default_rng(3).normal(size=(1, *current.video_shape)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(earlier(video)),
                                  keras.ops.convert_to_numpy(current(video)))


# --- one sentence per problem -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["empty.pth", "empty.bin", "empty.safetensors"])
def test_an_empty_file_is_named(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(CheckpointError) as error:
        vk.from_pretrained(str(path))
    assert str(error.value) == f"{path} is empty (0 bytes), not a checkpoint: download or copy " \
        "it again."


def test_a_tensor_of_the_wrong_shape_is_named_with_both_shapes(tmp_path):
    """The width was read from whichever tensor came first, so one damaged tensor made every
    other one look wrong; the majority of the tensors decides now."""
    hf = reference.set_official_epsilons(reference.hf_model("classifier", seed=33, **SMALL))
    state = reference.official_state_dict(hf)
    width, mlp = SMALL["hidden_size"], SMALL["intermediate_size"]
    for damaged, shape in [("blocks.1.mlp.fc1.weight", (mlp - 8, width)),
                           ("patch_embed.proj.weight", None)]:
        broken = dict(state)
        original = broken[damaged]
        shape = shape or (width + 4, *original.shape[1:])
        broken[damaged] = torch.zeros(shape)
        path = reference.save_official(broken, str(tmp_path / "damaged.pth"))
        with pytest.raises(CheckpointError) as error:
            vk.from_pretrained(path, num_heads=SMALL["num_attention_heads"], num_frames=4,
                               image_size=32)
        message = str(error.value)
        assert f"{damaged} has shape {tuple(shape)} where the rest of the checkpoint needs " \
            f"{tuple(original.shape)}" in message, message
        assert message.count(" has shape ") == 1 and "\n" not in message


@pytest.mark.parametrize("key,value,sentence", [
    ("num_attention_heads", "twelve", "num_attention_heads must be a whole number of at least 1; "
                                      "got 'twelve'."),
    ("num_attention_heads", [12], "num_attention_heads must be a whole number of at least 1; got "
                                  "[12]."),
    ("num_frames", 0, "num_frames must be a whole number of at least 1; got 0."),
    ("image_size", [224, 224, 3], "image_size must be a size (224) or [height, width]; got "
                                  "[224, 224, 3]."),
    ("hidden_dropout_prob", 1.5, "hidden_dropout_prob must be a number in [0, 1); got 1.5."),
    ("layer_norm_eps", "tiny", "layer_norm_eps must be a positive number; got 'tiny'."),
])
def test_malformed_config_values_get_one_sentence_each(hf_folder, tmp_path, key, value,
                                                       sentence):
    import json
    import shutil

    folder = tmp_path / "edited"
    shutil.copytree(hf_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as error:
        vk.from_pretrained(str(folder))
    assert str(error.value) == f"config.json: {sentence}"


@pytest.mark.parametrize("kwargs,sentence", [
    (dict(num_classes=-1), "num_classes must be a whole number, 0 or more"),
    (dict(num_heads=0), "num_heads must be a whole number of at least 1; got 0."),
    (dict(patch_size=0), "patch_size must be a whole number of at least 1; got 0."),
    (dict(num_heads=5), "hidden_dim=768 is not divisible by num_heads=5"),
    (dict(drop_path_rate=1.0), "drop_path_rate must be a number in [0, 1); got 1.0."),
    (dict(image_size=(224, 0)), "image_size must be a positive size"),
])
def test_model_arguments_out_of_range_are_refused_with_a_sentence(kwargs, sentence):
    with pytest.raises(ValueError) as error:
        vk.VideoMAEClassifier.from_arguments(**kwargs)
    assert str(error.value).startswith(sentence) and "\n" not in str(error.value)
