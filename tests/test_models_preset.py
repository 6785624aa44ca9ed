"""Preset folders (`save_to_preset` / `from_preset`): keras-hub's layout, loaded offline."""

import json
import os

import numpy as np
import pytest

import keras

import videomae_keras as vk

SMALL = dict(num_frames=4, image_size=32, patch_size=8, hidden_dim=32, depth=2, num_heads=2,
             mlp_dim=64)
DECODER = dict(decoder_hidden_dim=16, decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=32)
RNG = np.random.default_rng(7)


def _randomised(model):
    model.set_weights([RNG.normal(0, 0.3, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


def _video():
    return RNG.standard_normal((2, 4, 32, 32, 3)).astype("float32")


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_classifier_preset_round_trip_and_its_backbone(tmp_path):
    model = _randomised(vk.VideoMAEClassifier(vk.VideoMAEBackbone(**SMALL), num_classes=3,
                                              class_names=["run", "jump", "swim"]))
    folder = model.save_to_preset(tmp_path / "preset")
    assert sorted(os.listdir(folder)) == ["config.json", "metadata.json", "model.weights.h5",
                                          "task.json", "task.weights.h5"]
    with open(os.path.join(folder, "metadata.json")) as f:
        metadata = json.load(f)
    assert metadata["class_name"] == "VideoMAEClassifier"
    assert metadata["parameter_count"] == model.count_params()
    video = _video()
    restored = vk.VideoMAEClassifier.from_preset(folder)
    assert restored.class_names == ("run", "jump", "swim")
    np.testing.assert_array_equal(_np(restored(video)), _np(model(video)))
    backbone = vk.VideoMAEBackbone.from_preset(folder)
    assert type(backbone) is vk.VideoMAEBackbone
    np.testing.assert_array_equal(_np(backbone(video)), _np(model.backbone(video)))


def test_a_task_over_another_kind_of_preset_starts_from_its_backbone(tmp_path):
    pretrainer = _randomised(vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.5, **SMALL,
                                                                  **DECODER))
    folder = pretrainer.save_to_preset(str(tmp_path / "pt"))
    classifier = vk.VideoMAEClassifier.from_preset(folder, num_classes=5)
    assert classifier.get_config()["num_classes"] == 5
    for got, want in zip(classifier.backbone.get_weights(), pretrainer.backbone.get_weights()):
        np.testing.assert_array_equal(got, want)
    backbone_only = vk.VideoMAEBackbone.from_preset(folder).save_to_preset(tmp_path / "b")
    assert "task.json" not in os.listdir(backbone_only)
    again = vk.VideoMAEPretrainer.from_preset(backbone_only, mask_ratio=0.5, **DECODER)
    video = _video()
    np.testing.assert_array_equal(_np(again.backbone(video)), _np(pretrainer.backbone(video)))


def test_presets_are_not_overwritten_unless_asked(tmp_path):
    model = vk.VideoMAEBackbone(**SMALL)
    folder = model.save_to_preset(tmp_path / "p")
    with pytest.raises(FileExistsError, match="exists already.*overwrite"):
        model.save_to_preset(folder)
    _randomised(model).save_to_preset(folder, overwrite=True)
    video = _video()
    np.testing.assert_array_equal(_np(vk.VideoMAEBackbone.from_preset(folder)(video)),
                                  _np(model(video)))
    assert sorted(os.listdir(tmp_path)) == ["p"]  # no temporary left beside it


def test_bad_presets_are_explained(tmp_path):
    with pytest.raises(ValueError, match="neither a preset folder nor a registered name"):
        vk.VideoMAEBackbone.from_preset("no-such-preset")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a preset folder: it has no config.json"):
        vk.VideoMAEBackbone.from_preset(tmp_path / "empty")
    folder = vk.VideoMAEClassifier(vk.VideoMAEBackbone(**SMALL), num_classes=2).save_to_preset(
        tmp_path / "c")
    with pytest.raises(ValueError, match="holds a whole VideoMAEClassifier.*num_classes"):
        vk.VideoMAEClassifier.from_preset(folder, num_classes=3)
    os.remove(os.path.join(folder, "task.weights.h5"))
    with pytest.raises(ValueError, match="lacks task.weights.h5"):
        vk.VideoMAEClassifier.from_preset(folder)


def test_from_pretrained_reads_preset_folders(tmp_path):
    """`from_pretrained(folder)` dispatches a preset folder to the preset loader: the task it
    holds, its backbone with task="backbone", and one clear line for dtype=."""
    pretrainer = _randomised(vk.VideoMAEPretrainer(vk.VideoMAEBackbone(use_final_norm=True,
                                                                       **SMALL),
                                                   mask_ratio=0.5, **DECODER))
    folder = str(pretrainer.save_to_preset(tmp_path / "pretrainer"))
    from videomae_keras.convert.loading import source_kind

    assert source_kind(folder) == "preset"
    loaded = vk.from_pretrained(folder)
    assert type(loaded) is vk.VideoMAEPretrainer
    for mine, theirs in zip(pretrainer.weights, loaded.weights):
        np.testing.assert_array_equal(_np(mine), _np(theirs))
    backbone = vk.from_pretrained(folder, task="backbone")
    video = _video()
    np.testing.assert_allclose(_np(backbone(video)), _np(pretrainer.backbone(video)), atol=1e-6)
    with pytest.raises(ValueError, match="preset folder.*dtype"):
        vk.from_pretrained(folder, dtype="float16")
