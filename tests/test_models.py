"""Models: factories, parameter counts, saving, compilation, training steps and input errors."""

import numpy as np
import pytest

import keras
import videomae_keras as vk
from videomae_keras.presets import SIZES

BACKEND = keras.backend.backend()
TINY = dict(num_frames=4, image_size=32, patch_size=8, depth=2, hidden_dim=48, num_heads=4,
            mlp_dim=64)
TINY_DECODER = dict(decoder_hidden_dim=24, decoder_depth=1, decoder_num_heads=3, decoder_mlp_dim=32)
RNG = np.random.default_rng(0)


def _video(batch=2, frames=4, size=32):
    return RNG.standard_normal((batch, frames, size, size, 3)).astype("float32")


def _masks(batch, grid=(2, 4, 4), ratio=0.5, seed=0):
    generator = vk.TubeMaskingGenerator(grid, ratio, seed=seed)
    return np.stack([generator() for _ in range(batch)]).astype(bool)


def _np(x):
    return keras.ops.convert_to_numpy(x)


# --- backbone and tasks ----------------------------------------------------------------------

def test_tasks_wrap_a_shared_backbone():
    """`VideoMAEClassifier(pretrainer.backbone)`: the same backbone object and weights, and the
    classifier computes mean(backbone tokens) -> fc_norm -> head on it."""
    pretrainer = vk.VideoMAEPretrainer(vk.VideoMAEBackbone(use_final_norm=True, **TINY),
                                       mask_ratio=0.5, **TINY_DECODER)
    features = vk.VideoMAEClassifier(pretrainer.backbone, num_classes=0)
    classifier = vk.VideoMAEClassifier(pretrainer.backbone, num_classes=3)
    assert classifier.backbone is pretrainer.backbone is features.backbone
    assert classifier.encoder is pretrainer.encoder
    video = _video()
    tokens = _np(pretrainer.backbone(video))
    fc_norm = features.get_layer("fc_norm")
    np.testing.assert_allclose(_np(features(video)), _np(fc_norm(tokens.mean(axis=1))),
                               atol=1e-5)
    before = _np(features(video))
    kernel = pretrainer.encoder.blocks[0].mlp.fc1.kernel  # a pretrainer weight moves ...
    kernel.assign(_np(kernel) + RNG.normal(0, 0.5, kernel.shape).astype("float32"))
    assert np.abs(_np(features(video)) - before).max() > 1e-2  # ... the classifier's
    assert len(classifier.weights) == len(pretrainer.backbone.weights) + 4  # fc_norm, head


def test_task_config_holds_its_backbone_and_round_trips(tmp_path):
    classifier = vk.VideoMAEClassifier(vk.VideoMAEBackbone(**TINY), num_classes=5,
                                       class_names=list("abcde"))
    config = classifier.get_config()
    assert config["backbone"]["class_name"] == "VideoMAEBackbone"
    assert config["backbone"]["config"]["hidden_dim"] == TINY["hidden_dim"]
    assert "hidden_dim" not in config  # the backbone's arguments live in the backbone
    clone = vk.VideoMAEClassifier.from_config(config)
    assert type(clone.backbone) is vk.VideoMAEBackbone and clone.get_config() == config
    path = str(tmp_path / "c.keras")
    classifier.save(path)
    restored = keras.saving.load_model(path)
    video = _video()
    np.testing.assert_array_equal(_np(restored(video)), _np(classifier(video)))
    assert restored.backbone.get_config() == classifier.backbone.get_config()


def test_from_arguments_splits_one_flat_set():
    model = vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.5, drop_path_rate=0.1, **TINY,
                                                 **TINY_DECODER)
    assert model.backbone.architecture["drop_path_rate"] == 0.1
    assert model.backbone.architecture["use_final_norm"] is True  # the pretraining default
    assert model.get_config()["decoder_hidden_dim"] == TINY_DECODER["decoder_hidden_dim"]
    again = vk.VideoMAEPretrainer.from_arguments(**model.arguments())
    assert again.get_config() == model.get_config()
    first = vk.VideoMAEClassifier.from_arguments(num_classes=2, use_mean_pooling=False, **TINY)
    assert first.backbone.architecture["use_final_norm"] is True  # --use_cls models
    with pytest.raises(TypeError, match="Unknown argument.*hidden_size.*hidden_dim"):
        vk.VideoMAEClassifier.from_arguments(hidden_size=48)


def test_backbone_arguments_are_explicit_and_documented():
    import inspect

    for cls in (vk.VideoMAEBackbone, vk.VideoMAEClassifier, vk.VideoMAEPretrainer):
        names = [n for n, p in inspect.signature(cls.__init__).parameters.items()
                 if n not in ("self", "name", "kwargs")]
        undocumented = [n for n in names if n not in cls.__doc__]
        assert not undocumented, f"{cls.__name__} Args lack {undocumented}"
    assert {"hidden_dim", "depth", "num_heads", "mlp_dim", "num_frames"} <= set(
        inspect.signature(vk.VideoMAEBackbone.__init__).parameters)


def test_a_task_needs_a_backbone():
    with pytest.raises(TypeError, match="must be a VideoMAEBackbone.*VideoMAE_ViTB16FT"):
        vk.VideoMAEClassifier(400)
    with pytest.raises(TypeError, match="Unknown argument.*hidden_dim"):
        vk.VideoMAEClassifier(vk.VideoMAEBackbone(**TINY), hidden_dim=96)


# --- parameter counts ------------------------------------------------------------------------

def _expected_params(size, num_classes=None, pretraining=False):
    """Parameters of the official architecture, counted from its definition (facts file 3.1-3.2)."""
    preset = SIZES[size + ("14" if size == "g" else "16")]
    enc = preset.backbone
    d, depth, m, p = enc["hidden_dim"], enc["depth"], enc["mlp_dim"], enc["patch_size"]

    def block(dim, mlp):  # norm1, qkv (no bias) + q_bias + v_bias, proj, norm2, fc1, fc2
        return 2 * dim + 3 * dim * dim + 2 * dim + dim * dim + dim + 2 * dim + dim * mlp + mlp + mlp * dim + dim

    count = 3 * 2 * p * p * d + d + depth * block(d, m)
    if not pretraining:
        return count + 2 * d + d * num_classes + num_classes  # fc_norm, head
    dec = preset.decoder
    dd, out = dec["decoder_hidden_dim"], 3 * 2 * p * p
    count += 2 * d  # encoder norm
    count += d * dd + dd  # encoder_to_decoder (no bias), mask_token
    count += dec["decoder_depth"] * block(dd, dec["decoder_mlp_dim"]) + 2 * dd + dd * out + out
    return count


@pytest.mark.parametrize(
    "factory, size, millions",
    [(vk.VideoMAE_ViTS16FT, "S", 22.0), (vk.VideoMAE_ViTB16FT, "B", 86.5)],
)
def test_finetuned_parameter_counts(factory, size, millions):
    n = factory(num_classes=400).count_params()
    assert n == _expected_params(size, num_classes=400)
    assert round(n / 1e6, 1) == millions


@pytest.mark.parametrize(
    "factory, size, millions",
    [(vk.VideoMAE_ViTS16PT, "S", 24.0), (vk.VideoMAE_ViTB16PT, "B", 94.2)],
)
def test_pretraining_parameter_counts(factory, size, millions):
    n = factory().count_params()
    assert n == _expected_params(size, pretraining=True)
    assert round(n / 1e6, 1) == millions


@pytest.mark.slow
@pytest.mark.backend_independent  # the same layer code builds the weights on every backend
@pytest.mark.parametrize(
    "factory, size, classes, pretraining, millions",
    [
        (vk.VideoMAE_ViTL16FT, "L", 400, False, 304.3),
        (vk.VideoMAE_ViTH16FT, "H", 400, False, 632.1),
        (vk.VideoMAE_ViTg14FT, "g", 710, False, 1012.6),
        (vk.VideoMAE_ViTL16PT, "L", None, True, 343.0),
    ],
)
def test_large_parameter_counts(factory, size, classes, pretraining, millions):
    model = factory() if pretraining else factory(num_classes=classes)
    n = model.count_params()
    del model
    keras.backend.clear_session()  # up to 4 GB of weights
    assert n == _expected_params(size, num_classes=classes, pretraining=pretraining)
    assert round(n / 1e6, 1) == millions


def test_factory_architectures():
    g = vk.VideoMAE_ViTg14PT(num_frames=4, image_size=28, depth=1, decoder_depth=1)
    assert g.encoder.patch_size == 14 and g.encoder.mlp_dim == 6144
    assert g.decoder.mlp_dim == 2234 and g.decoder.output_dim == 1176
    s = vk.VideoMAE_ViTS16FT(num_classes=3, num_frames=2, image_size=16, depth=1)
    assert s.encoder.num_heads == 6 and s.architecture["layer_norm_epsilon"] == 1e-6
    h = vk.VideoMAE_ViTH16PT(num_frames=2, image_size=32, depth=1, decoder_depth=1)
    assert h.decoder.hidden_dim == 640 and h.encoder.num_heads == 16


# --- outputs --------------------------------------------------------------------------------

def test_classifier_outputs_and_variants():
    video = _video()
    model = vk.VideoMAEClassifier.from_arguments(num_classes=5, **TINY)
    assert _np(model(video)).shape == (2, 5)
    features = vk.VideoMAEClassifier.from_arguments(num_classes=0, **TINY)
    assert _np(features(video)).shape == (2, 48)
    first = vk.VideoMAEClassifier.from_arguments(num_classes=5, use_mean_pooling=False, **TINY)
    assert first.encoder.norm is not None and "fc_norm" not in [l.name for l in first.layers]
    assert _np(first(video)).shape == (2, 5)


def test_pretrainer_outputs_masked_tokens_in_ascending_order():
    video, masks = _video(), _masks(2)
    model = vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.5, **TINY, **TINY_DECODER)
    assert model.num_masked == 16
    out = _np(model([video, masks]))
    assert out.shape == (2, 16, 3 * 2 * 8 * 8)
    # Dict inputs, by Input name, give the same result.
    np.testing.assert_array_equal(_np(model({"video": video, "bool_masked_pos": masks})), out)


def test_backbone_all_and_visible_tokens():
    video, masks = _video(), _masks(2)
    full = vk.VideoMAEBackbone(**TINY)
    assert _np(full(video)).shape == (2, 32, 48)
    visible = vk.VideoMAEBackbone(mask_ratio=0.5, **TINY)
    visible.set_weights(full.get_weights())
    tokens = _np(visible([video, masks]))
    assert tokens.shape == (2, 16, 48)


def test_other_frame_counts_and_resolutions_reuse_weights():
    small = vk.VideoMAEClassifier.from_arguments(num_classes=5, **TINY)
    large = vk.VideoMAEClassifier.from_arguments(num_classes=5, **dict(TINY, num_frames=8, image_size=(48, 64)))
    large.set_weights(small.get_weights())  # no position weights: the table is recomputed
    assert _np(large(_video(1, 8, 48)[:, :, :, :1].repeat(64, axis=3))).shape == (1, 5)


def test_drop_path_is_active_only_in_training():
    model = vk.VideoMAEClassifier.from_arguments(num_classes=5, drop_path_rate=0.5, **TINY)
    rates = [b.drop_path.rate for b in model.encoder.blocks]
    assert rates == [0.0, 0.5]
    video = _video()
    np.testing.assert_array_equal(_np(model(video)), _np(model(video)))
    outs = [_np(model(video, training=True)) for _ in range(8)]
    assert any(not np.array_equal(outs[0], out) for out in outs[1:])  # blocks dropped at random


def test_mixed_precision_keeps_float32_logits():
    model = vk.VideoMAEClassifier.from_arguments(num_classes=5, dtype="mixed_bfloat16", **TINY)
    reference = vk.VideoMAEClassifier.from_arguments(num_classes=5, **TINY)
    reference.set_weights(model.get_weights())
    video = _video()
    logits = model(video)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert model.encoder.blocks[0].attn.qkv.compute_dtype == "bfloat16"
    np.testing.assert_allclose(_np(logits), _np(reference(video)), atol=0.1)


# --- the model contract: build, call, serialise, .keras / weights / preset round trips, jit ---

SMALL_CLIP = dict(num_frames=4, image_size=32, depth=1)


def _contract_cases():
    """(model, inputs, output shape) per task, at several sizes (one block, small clips)."""
    from videomae_keras.models.factories import build

    grid14 = (2, 2, 2)  # 4 frames at 28x28, patch 14
    dual_mask = np.stack([vk.RunningCellMaskingGenerator(grid14, 0.5)() for _ in range(2)])
    return {
        "backbone-S16": lambda: (vk.VideoMAEBackbone(**dict(SIZES["S16"].backbone, **SMALL_CLIP)),
                                 _video(), (2, 8, 384)),
        "backbone-masked": lambda: (vk.VideoMAEBackbone(mask_ratio=0.5, **TINY),
                                    [_video(), _masks(2)], (2, 16, TINY["hidden_dim"])),
        "classifier-tiny": lambda: (vk.VideoMAEClassifier.from_arguments(num_classes=5, **TINY),
                                    _video(), (2, 5)),
        "classifier-B16-first-token": lambda: (
            build("B16FT", num_classes=3, use_mean_pooling=False, **SMALL_CLIP), _video(), (2, 3)),
        "pretrainer-tiny": lambda: (
            vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.5, **TINY, **TINY_DECODER),
            [_video(), _masks(2)], (2, 16, 3 * 2 * 8 * 8)),
        "pretrainer-g14-dual-masking": lambda: (
            build("g14PT", num_frames=4, image_size=28, depth=1, decoder_depth=1, mask_ratio=0.5,
                  decoder_mask_ratio=0.5),
            [_video(size=28), _masks(2, grid=grid14), dual_mask.astype(bool)],
            (2, 4, 3 * 2 * 14 * 14)),
    }


@pytest.mark.parametrize("case", list(_contract_cases()))
def test_model_contract(case, tmp_path):
    from tests.model_test import run_model_test

    model, inputs, shape = _contract_cases()[case]()
    run_model_test(model, inputs, shape, str(tmp_path))


def test_mixed_precision_model_round_trip(tmp_path):
    model = vk.VideoMAEClassifier.from_arguments(num_classes=5, dtype="mixed_bfloat16", **TINY)
    path = str(tmp_path / "mixed.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.encoder.blocks[0].attn.qkv.compute_dtype == "bfloat16"
    video = _video()
    np.testing.assert_array_equal(_np(restored(video)), _np(model(video)))


# --- compilation ------------------------------------------------------------------------------

@pytest.mark.skipif(BACKEND != "torch", reason="torch.compile")
def test_torch_compile_predict_matches_eager():
    model = vk.VideoMAEPretrainer.from_arguments(
        mask_ratio=0.5, **dict(TINY, depth=1), **TINY_DECODER
    )
    video, masks = _video(), _masks(2)
    eager = _np(model([video, masks]))
    model.compile(jit_compile=True)
    np.testing.assert_allclose(model.predict([video, masks], verbose=0), eager, atol=1e-5)
    # Values cannot be checked while compiled: a wrong mask count makes its sample NaN.
    masks[0, np.flatnonzero(~masks[0])[0]] = True
    out = model.predict([video, masks], verbose=0)
    assert np.isnan(out[0]).all()
    np.testing.assert_allclose(out[1], eager[1], atol=1e-5)


def _layer_paths(model):
    return {id(layer): layer._parent_path for layer in model._flatten_layers(include_self=False)
            if not isinstance(layer, keras.layers.InputLayer)}


def test_building_gives_every_layer_the_path_its_first_call_records():
    """torch.compile guards on the name-scope path Keras records at a layer's first call: a
    layer left without one by building changed under the first compiled call, and the
    second call compiled the whole step again."""
    for model, inputs in [
        (vk.VideoMAEClassifier.from_arguments(num_classes=3, drop_path_rate=0.1,
                                               dropout_rate=0.1, **TINY), _video()),
        (vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.5, drop_path_rate=0.1, **TINY,
                                               **TINY_DECODER), [_video(), _masks(2)]),
    ]:
        built = _layer_paths(model)
        assert None not in built.values()
        model(inputs, training=True)
        assert _layer_paths(model) == built


@pytest.mark.skipif(BACKEND != "torch", reason="torch.compile")
def test_torch_compile_compiles_a_step_once():
    from torch._dynamo.utils import counters

    model = vk.VideoMAEClassifier.from_arguments(num_classes=3, **dict(TINY, depth=1))
    model.compile(jit_compile=True)
    video = _video()
    model.predict_on_batch(video)
    graphs = counters["stats"]["unique_graphs"]
    model.predict_on_batch(video)
    assert counters["stats"]["unique_graphs"] == graphs
    # The train step's zero_grad() is guarded on `grad is None`: gradients before the first
    # step keep it from compiling twice (compiling the step takes a minute on a CPU).
    model.compile(optimizer="adamw", loss=keras.losses.SparseCategoricalCrossentropy(True),
                  jit_compile=True)
    model.make_train_function()
    assert all(v.value.grad is not None for v in model.trainable_variables)


def test_wrong_mask_count_under_jit_poisons_only_that_sample():
    model = vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.5, **dict(TINY, depth=1), **TINY_DECODER)
    video, masks = _video(), _masks(2)
    good = _np(model([video, masks]))
    masks[0, np.flatnonzero(~masks[0])[0]] = True  # 17 masked tokens instead of 16
    if BACKEND == "torch":  # predict runs eagerly without torch.compile: values are checked
        with pytest.raises(ValueError, match="sample 0: 17"):
            model.predict([video, masks], verbose=0)
        return
    model.compile(jit_compile=True)
    out = model.predict([video, masks], verbose=0)
    assert np.isnan(out[0]).all()
    np.testing.assert_allclose(out[1], good[1], atol=1e-5)


# --- training steps ---------------------------------------------------------------------------

def test_classifier_fit_step_updates_weights():
    model = vk.VideoMAEClassifier.from_arguments(num_classes=3, drop_path_rate=0.1, **TINY)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=BACKEND != "torch")
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(_video(4), np.array([0, 1, 2, 0]), batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [np.array(w) for w in model.trainable_weights]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))


def test_pretrainer_fit_step_updates_weights():
    model = vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.5, **TINY, **TINY_DECODER)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="mse", jit_compile=BACKEND != "torch")
    targets = RNG.standard_normal((4, 16, 384)).astype("float32")
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit([_video(4), _masks(4)], targets, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [np.array(w) for w in model.trainable_weights]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))


# --- bad input --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def classifier():
    return vk.VideoMAEClassifier.from_arguments(num_classes=5, **TINY)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((4, 32, 32, 3), "rank 5"),
        ((2, 4, 32, 32, 1), "Expected 3 channels"),
        ((2, 4, 3, 32, 32), "Expected 3 channels"),
        ((2, 4, 30, 32, 3), "height 30 is not divisible by the patch size 8"),
        ((2, 4, 32, 36, 3), "width 36 is not divisible"),
        ((2, 3, 32, 32, 3), "3 frames, which is not divisible by the tubelet size 2"),
        ((2, 8, 32, 32, 3), r"built for clips of shape \(4, 32, 32, 3\).*num_frames=8"),
        ((2, 4, 64, 64, 3), "image_size=64"),
    ],
)
def test_bad_video_is_explained(classifier, shape, message):
    with pytest.raises(ValueError, match=message):
        classifier(np.zeros(shape, "float32"))


def test_bad_video_is_explained_under_predict(classifier):
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        classifier.predict(np.zeros((1, 4, 30, 32, 3), "float32"), verbose=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(image_size=225), "not divisible by patch_size=16"),
        (dict(num_frames=15), "num_frames=15 is not divisible by tubelet_size=2"),
        (dict(hidden_dim=100, num_heads=12), "not divisible by num_heads"),
        (dict(hidden_dims=768), "Unknown argument"),
    ],
)
def test_bad_architecture_is_explained(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        vk.VideoMAEClassifier.from_arguments(num_classes=5, **kwargs)


def test_bad_masks_are_explained():
    model = vk.VideoMAEPretrainer.from_arguments(mask_ratio=0.5, **dict(TINY, depth=1), **TINY_DECODER)
    video = _video()
    with pytest.raises(ValueError, match=r"shape \(batch, 32\).*got shape \(2, 30\)"):
        model([video, np.zeros((2, 30), bool)])
    with pytest.raises(ValueError, match="2 rows but the video batch has 3"):
        model([_video(3), _masks(2)])
    masks = _masks(2)
    masks[1, np.flatnonzero(masks[1])[:2]] = False
    with pytest.raises(ValueError, match="exactly 16 of 32 tokens.*sample 1: 14"):
        model([video, masks])
    with pytest.raises(ValueError, match="takes inputs"):
        model(video)
    with pytest.raises(ValueError, match="between 1 and 31"):
        vk.VideoMAEPretrainer.from_arguments(num_masked=32, **TINY)


def test_predict_on_batch_gathers_the_variables_once_per_call(monkeypatch):
    """Keras' jax trainer asks for the model's variable lists four times per
    predict_on_batch, each a walk over every sub-layer: we gather them once per call, give
    the same outputs, and keep nothing after it."""
    model = vk.VideoMAEClassifier.from_arguments(num_classes=3, **TINY)
    model.compile(jit_compile=keras.backend.backend() != "torch")
    video = np.random.default_rng(0).random((2, 4, 32, 32, 3), np.float32)
    walks = []
    original = keras.layers.Layer.variables

    def counted(layer):
        if layer is model:
            walks.append(1)
        return original.fget(layer)

    monkeypatch.setattr(keras.layers.Layer, "variables", property(counted))
    first = model.predict_on_batch(video)
    walks.clear()
    second = model.predict_on_batch(video)
    if keras.backend.backend() == "jax":
        assert len(walks) == 1
    np.testing.assert_allclose(second, keras.ops.convert_to_numpy(model(video)), atol=1e-5)
    np.testing.assert_array_equal(first, second)
    assert model.__dict__.get("_videomae_gathered") is None
    assert len(model.variables) == len(original.fget(model))
