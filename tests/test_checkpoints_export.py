"""Export (videomae_keras/checkpoints/export.py): each task's serving inputs and output name,
and an ONNX file of a masked pretrainer with all three inputs that onnxruntime runs to the
Keras outputs. `port` (test_checkpoints_porting.py) covers classifiers in every format."""

import numpy as np
import pytest

import keras

from videomae_keras.checkpoints import export
from videomae_keras.masking import RunningCellMaskingGenerator, mask_with_count
from videomae_keras.models import VideoMAEBackbone, VideoMAEClassifier, VideoMAEPretrainer

SMALL = dict(num_frames=4, image_size=32, patch_size=8, hidden_dim=48, depth=2, num_heads=4,
             mlp_dim=96)


def _pretrainer():
    return VideoMAEPretrainer.from_arguments(
        **SMALL, decoder_hidden_dim=32, decoder_depth=1, decoder_num_heads=2,
        decoder_mlp_dim=64, mask_ratio=0.5, decoder_mask_ratio=0.5)


def test_each_task_names_its_inputs_and_output():
    backbone = VideoMAEBackbone(**SMALL)
    classifier = VideoMAEClassifier(VideoMAEBackbone(**SMALL), num_classes=3)
    pretrainer = _pretrainer()
    assert [export.task_of(m) for m in (backbone, classifier, pretrainer)] == [
        "backbone", "classifier", "pretrainer"]
    assert [export.OUTPUT_NAMES[export.task_of(m)] for m in (backbone, classifier)] == [
        "tokens", "logits"]
    video = ("video", (None, 4, 32, 32, 3), "float32")
    assert export.input_specs(classifier) == [video]
    assert export.input_specs(pretrainer) == [video, ("bool_masked_pos", (None, 32), "bool"),
                                              ("decoder_mask", (None, 32), "bool")]
    assert not export.takes_mask(backbone) and export.takes_mask(pretrainer)


@pytest.mark.backend_independent  # the exporter runs TensorFlow in its own process
def test_onnx_of_a_dual_masking_pretrainer_runs_to_the_keras_outputs(tmp_path):
    pytest.importorskip("onnxruntime")
    keras.utils.set_random_seed(3)
    model = _pretrainer()
    rng = np.random.default_rng(0)
    inputs = {"video": rng.standard_normal((2, 4, 32, 32, 3)).astype("float32"),
              "bool_masked_pos": np.stack([mask_with_count(model.grid, model.num_masked, rng)
                                           for _ in range(2)])}
    cells = RunningCellMaskingGenerator(model.grid, 0.5)
    inputs["decoder_mask"] = np.stack([cells() for _ in range(2)]).astype(bool)
    expected = keras.ops.convert_to_numpy(model(list(inputs.values())))
    keras_file = str(tmp_path / "model.keras")
    model.save(keras_file)
    onnx_file = str(tmp_path / "model.onnx")
    export.export_files(model, keras_file, onnx=onnx_file)
    (out,) = export.run_onnx(onnx_file, inputs).values()
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=1e-4)
