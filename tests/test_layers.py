"""Layers: each against an independent computation (torch.nn.functional or numpy), and each
serializable (config round trip gives a layer with the same outputs)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import keras
from videomae_keras import layers

RNG = np.random.default_rng(0)


def _np(x):
    return keras.ops.convert_to_numpy(x)


# Check values of the position table (facts file, section 1.2).
@pytest.mark.parametrize(
    "num_tokens, dim, row1, last2",
    [
        (1568, 768, [0.84147096, 0.54030228, 0.82843077, 0.56009150], [0.15981568, 0.98714685]),
        (1568, 384, [0.84147096, 0.5403023, 0.81525064, 0.57910824], [0.16366065, 0.9865167]),
        (1568, 192, [0.84147096, 0.5403023, 0.78859305, 0.61491543], [0.17162487, 0.9851624]),
        (1568, 1280, None, [0.15830266, 0.98739064]),
        (2048, 1408, None, [0.20591207, 0.9785705]),
        (2048, 512, None, [0.21060985, 0.9775702]),
    ],
)
def test_sinusoid_table_check_values(num_tokens, dim, row1, last2):
    table = layers.sinusoid_table(num_tokens, dim)
    assert table.shape == (num_tokens, dim) and table.dtype == np.float32
    np.testing.assert_array_equal(table[0, :4], [0, 1, 0, 1])
    if row1 is not None:
        np.testing.assert_allclose(table[1, :4], row1, rtol=0, atol=1e-7)
    np.testing.assert_allclose(table[-1, -2:], last2, rtol=0, atol=1e-7)


def test_position_embedding_adds_rows_and_gathers_positions():
    x = RNG.standard_normal((2, 10, 6)).astype("float32")
    layer = layers.SinusoidPositionEmbedding()
    table = layers.sinusoid_table(10, 6)
    np.testing.assert_array_equal(_np(layer(x)), x + table)
    positions = np.array([[9, 0, 4], [1, 2, 3]])
    out = _np(layer(x[:, :3], positions=positions, num_tokens=10))
    np.testing.assert_array_equal(out, x[:, :3] + table[positions])


def test_tubelet_embedding_matches_torch_conv3d_token_order():
    layer = layers.TubeletEmbedding(8, patch_size=4, tubelet_size=2)
    video = RNG.standard_normal((2, 4, 8, 12, 3)).astype("float32")
    layer.build(video.shape)
    layer.proj.bias.assign(RNG.standard_normal(8).astype("float32"))
    tokens = _np(layer(video))
    kernel, bias = (_np(w) for w in layer.proj.weights)
    weight = torch.from_numpy(kernel.transpose(4, 3, 0, 1, 2).copy())  # -> (O, I, t, h, w)
    ref = F.conv3d(torch.from_numpy(video.transpose(0, 4, 1, 2, 3).copy()), weight,
                   torch.from_numpy(bias), stride=(2, 4, 4))
    ref = ref.flatten(2).transpose(1, 2)  # token index t*H'W' + h*W' + w
    assert tokens.shape == (2, 2 * 2 * 3, 8)
    np.testing.assert_allclose(tokens, ref.numpy(), atol=1e-5)
    # only some tokens, in a given order: the rows of the full embedding
    index = np.array([[11, 0, 5], [3, 4, 10]], dtype="int32")
    some = _np(layer(video, token_index=index))
    np.testing.assert_allclose(some, ref[torch.arange(2)[:, None], index].numpy(), atol=1e-5)


def _torch_attention(x, qkv_kernel, q_bias, v_bias, proj_kernel, proj_bias, heads):
    x = torch.from_numpy(x)
    dim = x.shape[-1]
    bias = torch.cat([torch.from_numpy(q_bias), torch.zeros(dim), torch.from_numpy(v_bias)])
    qkv = F.linear(x, torch.from_numpy(qkv_kernel.T.copy()), bias)
    q, k, v = qkv.reshape(x.shape[0], x.shape[1], 3, heads, -1).permute(2, 0, 3, 1, 4)
    attn = ((q * (dim // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
    out = (attn @ v).transpose(1, 2).reshape(x.shape)
    return F.linear(out, torch.from_numpy(proj_kernel.T.copy()), torch.from_numpy(proj_bias)).numpy()


@pytest.mark.parametrize("chunk_size", [1, 5, 23, 256])
def test_chunked_attention_matches_torch_sdpa(chunk_size):
    from videomae_keras.layers.attention import chunked_attention

    q, k, v = (RNG.standard_normal((2, 23, 3, 8)).astype("float32") for _ in range(3))
    ref = F.scaled_dot_product_attention(
        *(torch.from_numpy(a).transpose(1, 2) for a in (q, k, v)), scale=0.3
    ).transpose(1, 2).numpy()
    out = chunked_attention(q, k, v, scale=0.3, chunk_size=chunk_size)
    np.testing.assert_allclose(_np(out), ref, atol=2e-6)


def test_chunked_attention_in_float16_normalises_before_the_value_matmul():
    # float32 divides by the softmax sum after the value matmul; float16 keeps its matmul in
    # float16, so it must normalise first: with equal scores and values near 3000, the
    # unnormalised sum over 23 keys (~69000) would overflow.
    import keras

    from videomae_keras.layers.attention import chunked_attention

    q = k = np.zeros((1, 23, 2, 8), "float16")
    v = (3000 + 10 * RNG.standard_normal((1, 23, 2, 8))).astype("float16")
    out = chunked_attention(q, k, v, scale=0.3, chunk_size=5)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    out = _np(out).astype("float32")
    assert np.isfinite(out).all()
    expected = np.broadcast_to(v.astype("float32").mean(axis=1, keepdims=True), out.shape)
    np.testing.assert_allclose(out, expected, rtol=2e-3)


def test_chunk_size_keeps_the_score_block_size():
    from videomae_keras.layers import attention
    from videomae_keras.layers.attention import attention_chunk_size

    assert attention.ATTENTION_BLOCK_ROWS == 3072
    assert attention_chunk_size(1, 12) == 256  # ViT-B, batch 1
    assert attention_chunk_size(4, 6) == 128  # ViT-S, batch 4
    assert attention_chunk_size(None, 12) == 256  # unknown batch: as batch 1
    assert attention_chunk_size(64, 16) == 3 and attention_chunk_size(999, 16) == 1


def test_attention_takes_the_chunked_path_on_cpu_xla_only():
    from videomae_keras.utils import fused_attention_is_fast

    # torch has a fused CPU kernel; jax and tensorflow on CPU build the whole score matrix.
    assert fused_attention_is_fast() == (keras.backend.backend() == "torch")


def test_accelerator_attention_takes_the_fused_op_on_any_device(monkeypatch):
    """What the memory plan traces on CPU for a TPU: the fused op, not the CPU's chunks."""
    from videomae_keras.layers import attention
    from videomae_keras.utils import accelerator_attention, fused_attention_is_fast

    here = fused_attention_is_fast()

    def no_chunks(*args):
        raise AssertionError("the chunked path ran inside accelerator_attention()")

    monkeypatch.setattr(attention, "chunked_attention", no_chunks)
    layer = layers.MultiHeadSelfAttention(12, 3)
    x = RNG.standard_normal((2, 7, 12)).astype("float32")
    with accelerator_attention():
        with accelerator_attention():
            assert fused_attention_is_fast()
        assert fused_attention_is_fast()
        assert tuple(layer(x).shape) == (2, 7, 12)
    assert fused_attention_is_fast() == here


def test_softmax_attention_matches_torch_sdpa():
    from videomae_keras.layers.attention import softmax_attention

    q, k, v = (RNG.standard_normal((2, 23, 3, 8)).astype("float32") for _ in range(3))
    ref = F.scaled_dot_product_attention(
        *(torch.from_numpy(a).transpose(1, 2) for a in (q, k, v)), scale=0.3
    ).transpose(1, 2).numpy()
    np.testing.assert_allclose(_np(softmax_attention(q, k, v, scale=0.3)), ref, atol=2e-6)


def test_onnx_attention_traces_plain_softmax_attention(monkeypatch):
    """What the ONNX export traces: one softmax between two matmuls (the form runtimes
    fuse), neither the CPU's query chunks nor the fused op, and the same outputs."""
    from videomae_keras.layers import attention
    from videomae_keras.utils import onnx_attention, tracing_for_onnx

    layer = layers.MultiHeadSelfAttention(12, 3)
    x = RNG.standard_normal((2, 7, 12)).astype("float32")
    expected = _np(layer(x))
    taken = []
    plain = attention.softmax_attention
    monkeypatch.setattr(attention, "softmax_attention",
                        lambda *args: taken.append(1) or plain(*args))

    def other(*args, **kwargs):
        raise AssertionError("another attention path ran inside onnx_attention()")

    monkeypatch.setattr(attention, "chunked_attention", other)
    monkeypatch.setattr(attention.ops, "dot_product_attention", other)
    assert not tracing_for_onnx()
    with onnx_attention():
        with onnx_attention():
            assert tracing_for_onnx()
        np.testing.assert_allclose(_np(layer(x)), expected, atol=2e-6)
    assert not tracing_for_onnx() and taken == [1]


@pytest.mark.parametrize("path", ["fused", "chunked"])
def test_attention_matches_reference_with_q_and_v_bias_only(path, monkeypatch):
    from videomae_keras.layers import attention

    monkeypatch.setattr(attention, "fused_attention_is_fast", lambda: path == "fused")
    monkeypatch.setattr(attention, "ATTENTION_BLOCK_ROWS", 18)  # 3 queries a block here
    layer = layers.MultiHeadSelfAttention(12, 3)
    x = RNG.standard_normal((2, 7, 12)).astype("float32")
    layer.build(x.shape)
    for w in layer.weights:
        w.assign(RNG.standard_normal(w.shape).astype("float32") * 0.3)
    ref = _torch_attention(
        x, _np(layer.qkv.kernel), _np(layer.q_bias), _np(layer.v_bias),
        _np(layer.proj.kernel), _np(layer.proj.bias), heads=3,
    )
    np.testing.assert_allclose(_np(layer(x)), ref, atol=2e-6)
    # With attention dropout configured, inference still takes the dropout-free path.
    dropped = layers.MultiHeadSelfAttention(12, 3, attention_dropout_rate=0.5)
    dropped.build(x.shape)
    dropped.set_weights(layer.get_weights())
    np.testing.assert_allclose(_np(dropped(x, training=False)), ref, atol=2e-6)
    assert not np.allclose(_np(dropped(x, training=True)), ref, atol=1e-3)


def test_attention_without_qv_bias_has_no_bias_weights():
    layer = layers.MultiHeadSelfAttention(12, 4, qv_bias=False)
    layer.build((None, 5, 12))
    assert sorted(w.path.split("/")[-1] for w in layer.weights) == ["bias", "kernel", "kernel"]
    with pytest.raises(ValueError, match="divisible"):
        layers.MultiHeadSelfAttention(10, 4)


def test_mlp_uses_exact_gelu():
    layer = layers.MLP(6, 20)
    x = (RNG.standard_normal((3, 6)) * 3).astype("float32")
    layer.build(x.shape)
    k1, b1, k2, b2 = (_np(w) for w in layer.weights)
    hidden = F.gelu(torch.from_numpy(x @ k1 + b1), approximate="none").numpy()
    np.testing.assert_allclose(_np(layer(x)), hidden @ k2 + b2, atol=2e-5)


def test_drop_path_drops_whole_samples_only_in_training():
    layer = layers.DropPath(0.5, seed=1)
    x = np.ones((64, 4, 3), "float32")
    np.testing.assert_array_equal(_np(layer(x)), x)
    out = _np(layer(x, training=True))
    per_sample = out.reshape(64, -1)
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert (per_sample.min(1) == per_sample.max(1)).all()
    assert 0 < (per_sample[:, 0] == 0).sum() < 64


def test_block_with_layer_scale_and_epsilon():
    block = layers.TransformerBlock(8, 2, 16, init_values=0.1, layer_norm_epsilon=1e-12)
    x = RNG.standard_normal((2, 5, 8)).astype("float32")
    block.build(x.shape)
    names = {"/".join(w.path.split("/")[-2:]) for w in block.weights}
    assert {"gamma_1/gamma", "gamma_2/gamma", "attn/q_bias", "attn/v_bias"} <= names
    assert block.norm1.epsilon == 1e-12 and block.norm2.epsilon == 1e-12
    np.testing.assert_allclose(_np(block.layer_scale_1.gamma), 0.1)
    y = x + 0.1 * _np(block.attn(block.norm1(x)))
    y = y + 0.1 * _np(block.mlp(block.norm2(y)))
    np.testing.assert_allclose(_np(block(x)), y, atol=1e-5)


@pytest.mark.parametrize("rates", [dict(dropout_rate=0.5), dict(drop_path_rate=0.5)])
def test_block_dropout_and_drop_path_act_in_training_only(rates):
    """The block skips its idle dropout layers (an eager-torch saving), never active ones."""
    quiet = layers.TransformerBlock(8, 2, 16)
    noisy = layers.TransformerBlock(8, 2, 16, **rates)
    x = RNG.standard_normal((16, 5, 8)).astype("float32")
    quiet.build(x.shape)
    noisy.build(x.shape)
    noisy.set_weights(quiet.get_weights())
    clean = _np(quiet(x))
    np.testing.assert_array_equal(_np(quiet(x, training=True)), clean)
    np.testing.assert_array_equal(_np(noisy(x, training=False)), clean)
    assert not np.allclose(_np(noisy(x, training=True)), clean, atol=1e-3)


@pytest.mark.parametrize(
    "make, inputs",
    [
        (lambda: layers.TubeletEmbedding(8, patch_size=4, tubelet_size=2), [(1, 2, 8, 8, 3)]),
        (lambda: layers.SinusoidPositionEmbedding(), [(1, 5, 6)]),
        (lambda: layers.MultiHeadSelfAttention(12, 3, qv_bias=True), [(1, 5, 12)]),
        (lambda: layers.MLP(6, 10, dropout_rate=0.1), [(1, 5, 6)]),
        (lambda: layers.DropPath(0.2, seed=3), [(1, 5, 6)]),
        (lambda: layers.LayerScale(0.1), [(1, 5, 6)]),
        (lambda: layers.TransformerBlock(8, 2, 16, init_values=0.5, layer_norm_epsilon=1e-5),
         [(1, 5, 8)]),
        (lambda: layers.VideoMAEEncoder(hidden_dim=8, depth=2, num_heads=2, mlp_dim=12,
                                        patch_size=4, use_final_norm=True), [(1, 2, 8, 8, 3)]),
        (lambda: layers.TokenPooling("first"), [(2, 5, 6)]),
    ],
)
def test_layers_serialize(make, inputs):
    layer = make()
    data = [RNG.standard_normal(s).astype("float32") for s in inputs]
    out = _np(layer(*data))
    config = keras.saving.serialize_keras_object(layer)
    assert config["module"] is None or "videomae_keras" in str(config)
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    clone(*data)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(_np(clone(*data)), out, atol=1e-6)


def test_decoder_serializes_and_predicts_target_tokens():
    decoder = layers.VideoMAEDecoder(6, hidden_dim=8, depth=1, num_heads=2, mlp_dim=12, output_dim=5)
    x = RNG.standard_normal((2, 3, 8)).astype("float32")
    visible = np.array([[0, 2, 5], [1, 3, 4]])
    targets = np.array([[1, 3, 4], [0, 2, 5]])
    out = _np(decoder(x, visible, targets))
    assert out.shape == (2, 3, 5)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(decoder))
    clone(x, visible, targets)
    clone.set_weights(decoder.get_weights())
    np.testing.assert_allclose(_np(clone(x, visible, targets)), out, atol=1e-6)


def test_masked_token_index_orders_and_validates():
    mask = np.array([[1, 0, 1, 0, 0, 1], [0, 1, 1, 1, 0, 0]], bool)
    visible, masked, valid = (_np(t) for t in layers.MaskedTokenIndex(3)(mask))
    np.testing.assert_array_equal(visible, [[1, 3, 4], [0, 4, 5]])
    np.testing.assert_array_equal(masked, [[0, 2, 5], [1, 2, 3]])
    assert valid.tolist() == [True, True]
    with pytest.raises(ValueError, match="exactly 2 of 6 tokens.*sample 0: 3"):
        layers.MaskedTokenIndex(2)(mask)
