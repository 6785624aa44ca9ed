"""Export (videomae_keras/checkpoints/export.py): each task's serving inputs and output name,
and an ONNX file of a masked pretrainer with all three inputs that onnxruntime runs to the
Keras outputs. `port` (test_checkpoints_porting.py) covers classifiers in every format."""

import os

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


@pytest.mark.backend_independent  # tf2onnx's graph objects only
def test_tf2onnx_node_protos_are_renewed_for_each_rewrite(monkeypatch):
    """tf2onnx rewrites every node's NodeProto in place after each optimizer pass, and under
    protobuf's upb runtime each rewrite kept another copy of the weights (12 GB for ViT-B):
    inside the export each rewrite gets a new NodeProto with the same fields."""
    pytest.importorskip("tf2onnx")
    import onnx
    from tf2onnx.graph import Graph, Node

    monkeypatch.delenv("TF2ONNX_CATCH_ERRORS", raising=False)
    weights = np.random.default_rng(0).standard_normal((6, 5)).astype("float32")
    graph = Graph([], opset=15)
    const = graph.make_const("weights", weights)
    graph.add_graph_input("x", 1, [2, 6])
    node = graph.make_node("MatMul", ["x", const.output[0]], name="project")
    node.domain = "ai.onnx"
    original = Node.update_proto
    kept = const.op
    const.update_proto()
    assert const.op is kept  # without the export's context the proto is rewritten in place

    with export._node_protos_renewed():
        assert os.environ["TF2ONNX_CATCH_ERRORS"] == "FALSE"  # no deep copy before each pass
        for _ in range(3):  # (the old protos are freed: their ids may come back)
            for each in (const, node):
                before = each.op
                each.update_proto()
                assert each.op is not before
        assert (node.op.name, node.op.op_type, node.op.domain) == ("project", "MatMul",
                                                                   "ai.onnx")
        assert list(node.op.input) == ["x", const.output[0]]
        assert list(node.op.output) == node.output
        (value,) = const.op.attribute
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(value.t), weights)
    assert Node.update_proto is original
    assert "TF2ONNX_CATCH_ERRORS" not in os.environ

    monkeypatch.setenv("TF2ONNX_CATCH_ERRORS", "TRUE")  # a user's own setting is kept
    with export._node_protos_renewed():
        assert os.environ["TF2ONNX_CATCH_ERRORS"] == "TRUE"
    assert os.environ["TF2ONNX_CATCH_ERRORS"] == "TRUE"
