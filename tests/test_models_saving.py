"""`.keras` files loaded without reading the whole weights member into memory: the same
model as Keras' own `load_model`, nothing left beside the file, compiled files unchanged."""

import os
import warnings
import zipfile

import numpy as np
import pytest

import keras
import videomae_keras as vk
from videomae_keras.models import saving

ARGS = dict(num_classes=5, num_frames=4, image_size=32, patch_size=8, hidden_dim=32, depth=2,
            num_heads=4, mlp_dim=48)


def _weights(model):
    return [np.asarray(keras.ops.convert_to_numpy(w)) for w in model.weights]


def _refuse_scratch_folders(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the weights member was extracted")

    monkeypatch.setattr(saving.tempfile, "TemporaryDirectory", refuse)


def _deflated(path, target):
    """The same `.keras` file with its members compressed (Keras stores them)."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(
            target, "w", compression=zipfile.ZIP_DEFLATED) as copy:
        for name in source.namelist():
            copy.writestr(name, source.read(name))
    return target


def test_plain_file_loads_like_keras_read_in_place(tmp_path, monkeypatch):
    model = vk.VideoMAEClassifier.from_arguments(**ARGS)
    path = str(tmp_path / "model.keras")
    model.save(path)
    assert saving._plain_config(path) is not None
    _refuse_scratch_folders(monkeypatch)  # the stored member is read where it lies
    ours = saving.load_keras_model(path)
    theirs = keras.saving.load_model(path, safe_mode=True)
    assert ours.get_config() == theirs.get_config()
    for a, b, c in zip(_weights(ours), _weights(theirs), _weights(model)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert os.listdir(tmp_path) == ["model.keras"]


def test_compressed_member_is_extracted_and_removed(tmp_path):
    model = vk.VideoMAEClassifier.from_arguments(**ARGS)
    model.save(str(tmp_path / "stored.keras"))
    path = _deflated(str(tmp_path / "stored.keras"), str(tmp_path / "model.keras"))
    os.remove(tmp_path / "stored.keras")
    for a, b in zip(_weights(saving.load_keras_model(path)), _weights(model)):
        np.testing.assert_array_equal(a, b)
    assert os.listdir(tmp_path) == ["model.keras"]  # the extracted weights are gone


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    """A file whose weights member belongs to another model: Keras' reader fails on the
    shapes and the load says so instead of returning a half-filled model."""
    small = vk.VideoMAEClassifier.from_arguments(**ARGS)
    other = vk.VideoMAEClassifier.from_arguments(**{**ARGS, "mlp_dim": 40})
    small.save(str(tmp_path / "small.keras"))
    other.save(str(tmp_path / "other.keras"))
    path = str(tmp_path / "mixed.keras")
    with zipfile.ZipFile(tmp_path / "small.keras") as a, zipfile.ZipFile(
            tmp_path / "other.keras") as b, zipfile.ZipFile(path, "w") as mixed:
        for name in a.namelist():
            mixed.writestr(name, (b if name == "model.weights.h5" else a).read(name))
    with pytest.raises(ValueError, match="could not be loaded"):
        saving.load_keras_model(path)


def test_memory_is_handed_back_as_the_layers_load(tmp_path, monkeypatch):
    """glibc keeps the placeholders that assignments free; a ViT-L `.keras` load on jax
    peaked at 2.1x its weights until the load handed them back layer by layer (1.2x)."""
    model = vk.VideoMAEClassifier.from_arguments(**ARGS)
    path = str(tmp_path / "model.keras")
    model.save(path)
    counted = []

    class Recording(saving.FreedMemory):
        def count(self, nbytes):
            counted.append(nbytes)

    monkeypatch.setattr(saving, "FreedMemory", Recording)
    loaded = saving.load_keras_model(path)
    assert sum(counted) == sum(w.size for w in _weights(model)) * 4  # every float32 weight
    assert not any("load_own_variables" in vars(layer)
                   for layer in loaded._flatten_layers(include_self=True))
    for a, b in zip(_weights(loaded), _weights(model)):
        np.testing.assert_array_equal(a, b)


def test_compiled_file_goes_through_keras(tmp_path):
    model = vk.VideoMAEClassifier.from_arguments(**ARGS)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    path = str(tmp_path / "compiled.keras")
    model.save(path)
    assert saving._plain_config(path) is None
    loaded = saving.load_keras_model(path)
    assert loaded.optimizer is not None
    for a, b in zip(_weights(loaded), _weights(model)):
        np.testing.assert_array_equal(a, b)


def test_read_only_folder_still_loads(tmp_path, monkeypatch):
    """A compressed member must be extracted: to the system's temporary folder when the
    file's own folder refuses, else read from inside the archive."""
    model = vk.VideoMAEClassifier.from_arguments(**ARGS)
    model.save(str(tmp_path / "stored.keras"))
    path = _deflated(str(tmp_path / "stored.keras"), str(tmp_path / "model.keras"))
    original = saving.tempfile.TemporaryDirectory

    def refuse_beside(*args, dir=None, **kwargs):
        if dir is not None:
            raise PermissionError("read-only")
        return original(*args, **kwargs)

    monkeypatch.setattr(saving.tempfile, "TemporaryDirectory", refuse_beside)
    for a, b in zip(_weights(saving.load_keras_model(path)), _weights(model)):
        np.testing.assert_array_equal(a, b)


def _quantized(model):
    from videomae_keras.models.base import quantize_remaining

    quantize_remaining(model, "int8")
    return model


def test_int8_models_save_and_reload(tmp_path):
    """A quantized classifier, pretrainer and backbone reload (the config says int8, so the
    int8 variables are rebuilt before the weights fill them), through both loaders, with
    the same outputs as before saving."""
    rng = np.random.default_rng(3)
    arch = {k: v for k, v in ARGS.items() if k != "num_classes"}
    classifier = vk.VideoMAEClassifier.from_arguments(**ARGS)
    models = {"classifier": classifier, "backbone": vk.VideoMAEBackbone(**arch),
              "pretrainer": vk.VideoMAEPretrainer.from_arguments(**arch, decoder_depth=1)}
    for name, model in models.items():
        video = rng.standard_normal((2, *model.video_shape)).astype("float32")
        inputs = video
        if name == "pretrainer":
            mask = np.zeros((2, model.num_tokens), bool)
            mask[:, : model.num_masked] = True
            inputs = [video, mask]
        float_out = keras.ops.convert_to_numpy(model(inputs))
        expected = keras.ops.convert_to_numpy(_quantized(model)(inputs))
        assert not np.array_equal(expected, float_out)  # the int8 path ran
        assert model.get_config()["quantization"] == "int8"
        path = str(tmp_path / f"{name}.keras")
        model.save(path)
        for loaded in (saving.load_keras_model(path), keras.saving.load_model(path)):
            assert loaded.get_config()["quantization"] == "int8"
            assert {w.dtype for w in loaded.weights} >= {"int8"}
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(inputs)), expected)
        # asking an int8 model for int8 again (Keras refuses to quantize a layer twice)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # jax and tensorflow say int8 is no faster
            vk.optimize_for_inference(loaded, jit_compile=False, int8=True)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(inputs)), expected)


def test_float_configs_have_no_quantization_key():
    assert "quantization" not in vk.VideoMAEClassifier.from_arguments(**ARGS).get_config()
