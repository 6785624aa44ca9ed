"""onnxruntime kernel fusions of exported graphs (videomae_keras/checkpoints/onnx_fusion.py):
every fused graph runs to the outputs of the graph it came from (onnxruntime on both, the
unfused graph the reference), each pattern is found where the export writes it, and what does
not match is left alone."""

import collections

import numpy as np
import pytest

import keras

from videomae_keras.checkpoints import export
from videomae_keras.checkpoints.onnx_fusion import fuse_for_onnxruntime
from videomae_keras.models import VideoMAEBackbone, VideoMAEClassifier

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper

SMALL = dict(num_frames=4, image_size=32, patch_size=8, hidden_dim=48, depth=2, num_heads=4,
             mlp_dim=96)
RNG = np.random.default_rng(0)


def _run(model_proto, feeds):
    session = ort.InferenceSession(model_proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _ops(model_proto):
    return collections.Counter(node.op_type for node in model_proto.graph.node)


def _prepared(float_path, tmp_path):
    """The float file through onnxruntime's quantisation pre-processing (shape inference and
    graph optimisation), as `quantize_onnx` fuses it."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = str(tmp_path / "prepared.onnx")
    quant_pre_process(float_path, prepared)
    return onnx.load(prepared)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Float ONNX files of a small classifier with every weight random, and of one whose
    LayerNorms keep their initial scales of one and offsets of zero (whose Add the export
    folds away), everything else random."""
    folder = tmp_path_factory.mktemp("fusion")
    files = {}
    for name in ("random", "unit_norms"):
        keras.utils.set_random_seed(5)
        model = VideoMAEClassifier(VideoMAEBackbone(**SMALL), num_classes=3)
        for weight in model.weights:
            norm = weight.path.endswith(("gamma", "beta"))
            if name == "unit_norms" and norm:
                continue
            weight.assign(RNG.standard_normal(weight.shape).astype("float32") * 0.2
                          + (1.0 if weight.path.endswith("gamma") else 0.0))
        keras_file = str(folder / f"{name}.keras")
        model.save(keras_file)
        files[name] = str(folder / f"{name}.onnx")
        export.export_files(model, keras_file, onnx=files[name])
    return files


@pytest.mark.backend_independent  # the export runs TensorFlow in its own process
@pytest.mark.parametrize("weights", ["random", "unit_norms"])
def test_fused_graph_runs_to_the_exported_outputs(exported, weights, tmp_path):
    exported_graph = onnx.load(exported[weights])
    ops = _ops(exported_graph)
    # the export's plain attention: one Softmax per block, not the CPU's query chunks
    assert ops["Softmax"] == SMALL["depth"] and ops["ReduceMax"] == 0 and ops["Exp"] == 0
    prepared = _prepared(exported[weights], tmp_path)
    video = RNG.standard_normal((2, 4, 32, 32, 3)).astype("float32")
    (expected,) = _run(prepared, {"video": video})

    counts = fuse_for_onnxruntime(prepared)
    depth = SMALL["depth"]
    # every block's attention, both its LayerNorms and its GELU; the pooled tokens' norm
    # (over (B, D), a ReduceMean not a GlobalAveragePool) stays as it is
    assert counts == {"MultiHeadAttention": depth, "LayerNormalization": 2 * depth,
                      "Gelu": depth}
    ops = _ops(prepared)
    assert ops["Softmax"] == 0 and ops["Erf"] == 0 and ops["GlobalAveragePool"] == 0
    norms = [n for n in prepared.graph.node if n.op_type == "LayerNormalization"]
    assert {len(n.input) for n in norms} == {3 if weights == "random" else 2}  # offsets
    heads = {a.i for n in prepared.graph.node if n.op_type == "MultiHeadAttention"
             for a in n.attribute if a.name == "num_heads"}
    assert heads == {SMALL["num_heads"]}
    onnx.checker.check_model(prepared)
    (fused,) = _run(prepared, {"video": video})
    np.testing.assert_allclose(fused, expected, atol=1e-5)
    assert np.abs(expected).std() > 0.1  # outputs that could show a difference
    used = {name for n in prepared.graph.node for name in n.input}
    assert {t.name for t in prepared.graph.initializer} <= used  # nothing left behind


def _attention_graph(scale_after, scores_used_elsewhere=False, opset=17, key_heads=3,
                     scale_is_an_input=False):
    """q (B, H, N, Dh) -> q @ k^T -> [* scale] -> Softmax -> @ v, the heads' layout moved as
    the export moves it; optionally the scores also a graph output, k and v with one head
    broadcast over the queries' (`key_heads=1`), the scale an initializer that is also a
    graph input (a value the caller may override)."""
    b, h, n, d = 2, 3, 5, 4
    nodes = [
        helper.make_node("Transpose", ["q"], ["qh"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["v"], ["vh"], perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["qh", "kt"], ["scores"]),
    ]
    logits = "scores"
    if scale_after:
        nodes.append(helper.make_node("Mul", ["scores", "scale"], ["logits"]))
        logits = "logits"
    nodes += [helper.make_node("Softmax", [logits], ["weights"], axis=-1),
              helper.make_node("MatMul", ["weights", "vh"], ["heads"]),
              helper.make_node("Transpose", ["heads"], ["out"], perm=[0, 2, 1, 3])]
    inputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT,
                                            [b, n, h if x == "q" else key_heads, d])
              for x in ("q", "k", "v")]
    if scale_is_an_input:
        inputs.append(helper.make_tensor_value_info("scale", TensorProto.FLOAT, []))
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [b, n, h, d])]
    if scores_used_elsewhere:
        outputs.append(helper.make_tensor_value_info("scores", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "attention", inputs, outputs, initializer=[
        numpy_helper.from_array(np.asarray(0.37, np.float32), "scale")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return onnx.shape_inference.infer_shapes(model)


def _feeds(model):
    return {i.name: RNG.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]
                                        ).astype("float32") for i in model.graph.input
            if i.name != "scale"}


@pytest.mark.backend_independent  # onnx graphs only
@pytest.mark.parametrize("scale_after", [False, True])
def test_attention_with_its_scale_before_or_after_the_scores(scale_after):
    model = _attention_graph(scale_after)
    feeds = _feeds(model)
    (expected,) = _run(model, feeds)
    assert fuse_for_onnxruntime(model)["MultiHeadAttention"] == 1
    fused = [n for n in model.graph.node if n.op_type == "MultiHeadAttention"]
    scale = next(a.f for a in fused[0].attribute if a.name == "scale")
    assert scale == pytest.approx(0.37 if scale_after else 1.0)
    assert _ops(model)["Softmax"] == 0
    assert [t.name for t in model.graph.initializer if t.name == "scale"] == []  # unread
    np.testing.assert_allclose(_run(model, feeds)[0], expected, atol=1e-5)


@pytest.mark.backend_independent  # onnx graphs only
@pytest.mark.parametrize("case", [
    dict(scale_after=False, scores_used_elsewhere=True),  # inner tensor read outside
    dict(scale_after=True, opset=13),  # before opset 15 operators meant other things
    dict(scale_after=False, key_heads=1),  # one key head broadcast: not one per query head
    dict(scale_after=True, scale_is_an_input=True),  # a scale the caller may override
])
def test_a_graph_that_does_not_match_exactly_is_left_alone(case):
    model = _attention_graph(**case)
    before = model.SerializeToString()
    assert fuse_for_onnxruntime(model) == {"MultiHeadAttention": 0, "LayerNormalization": 0,
                                           "Gelu": 0}
    assert model.SerializeToString() == before
    _run(model, _feeds(model))  # and still runs
