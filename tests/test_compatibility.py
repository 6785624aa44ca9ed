"""Files saved by earlier releases keep loading and give the outputs they gave then.

tests/fixtures/release_0_1 holds `.keras` files written by release 0.1 (flat model configs,
before the backbone/task split) with random weights, and the outputs they gave then
(fixtures/release_0_1/make.py says how they were made).
"""

import os

import numpy as np
import pytest

import keras

import videomae_keras as vk

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "release_0_1")
INPUTS = {
    "classifier": ["video"],
    "classifier_first_token": ["video"],
    "backbone": ["video"],
    "backbone_masked": ["video", "mask_50"],
    "pretrainer": ["video", "mask_75"],
    "pretrainer_dual": ["video", "mask_75", "decoder_mask"],
}
TYPES = {"classifier": vk.VideoMAEClassifier, "pretrainer": vk.VideoMAEPretrainer,
         "backbone": vk.VideoMAEBackbone}


@pytest.fixture(scope="module")
def arrays():
    with np.load(os.path.join(HERE, "outputs.npz")) as data:
        return dict(data)


def _inputs(name, arrays):
    values = [arrays[key] for key in INPUTS[name]]
    return values[0] if len(values) == 1 else values


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_release_0_1_files_load_and_give_the_same_outputs(name, arrays):
    model = keras.saving.load_model(os.path.join(HERE, f"{name}.keras"), safe_mode=True)
    assert type(model) is TYPES[name.split("_")[0]]
    output = np.asarray(model.predict_on_batch(_inputs(name, arrays)))
    expected = arrays[f"{name}_output"]
    # float32 rounding across backends: 1e-5, or 1e-6 of the outputs' scale where they are
    # large (random weights give backbone tokens up to about 35)
    atol = 1e-6 * max(10.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(output, expected, atol=atol, rtol=1e-5)
    # through from_pretrained too, and saved again by today's code: the same outputs
    again = vk.from_pretrained(os.path.join(HERE, f"{name}.keras"))
    np.testing.assert_allclose(np.asarray(again.predict_on_batch(_inputs(name, arrays))),
                               output, atol=1e-6)


def test_release_0_1_classifier_keeps_its_class_names_and_dtype():
    model = keras.saving.load_model(os.path.join(HERE, "classifier.keras"), safe_mode=True)
    assert model.class_names == tuple("abcde") and model.name == "small_classifier"
    assert model.dtype_policy.name == "float32"
