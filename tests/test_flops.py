"""Parameter and FLOP counts (videomae_keras/flops.py): parameters equal the built model's own
count, and FLOPs per view the figures the VideoMAE paper gives for its released sizes."""

import inspect

import pytest

from videomae_keras import flops, presets
from videomae_keras.models import VideoMAEBackbone, VideoMAEClassifier, VideoMAEPretrainer


def _defaults(cls):
    return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty and k not in ("name", "dtype")}


def _arguments(name):
    """The full arguments of a released architecture, without building it."""
    size, task = presets.architecture(name)
    cls = VideoMAEClassifier if task == "classifier" else VideoMAEPretrainer
    out = {**_defaults(VideoMAEBackbone), **_defaults(cls), **presets.arguments(name)}
    out.pop("name", None)
    return out


# VideoMAE (Tong et al. 2022), Table 6 and the model zoo: GFLOPs of one 16x224x224 view.
PAPER_GFLOPS = {"S16FT": 57, "B16FT": 180, "L16FT": 597, "H16FT": 1192}


@pytest.mark.backend_independent
@pytest.mark.parametrize("name", sorted(PAPER_GFLOPS))
def test_flops_per_view_match_the_paper(name):
    gflops = flops.count(_arguments(name))["flops"] / 1e9
    assert gflops == pytest.approx(PAPER_GFLOPS[name], rel=0.015)


@pytest.mark.parametrize("build", [
    lambda: VideoMAEBackbone(num_frames=4, image_size=32, patch_size=8, hidden_dim=48, depth=2,
                             num_heads=4, mlp_dim=96, qv_bias=False, init_values=0.1,
                             use_final_norm=True),
    lambda: VideoMAEClassifier(VideoMAEBackbone(num_frames=4, image_size=(32, 48),
                                                patch_size=8, hidden_dim=48, depth=2,
                                                num_heads=4, mlp_dim=96), num_classes=5),
    lambda: VideoMAEClassifier(VideoMAEBackbone(num_frames=4, image_size=32, patch_size=8,
                                                hidden_dim=48, depth=1, num_heads=4,
                                                mlp_dim=96, use_final_norm=True),
                               num_classes=3, use_mean_pooling=False),
    lambda: VideoMAEPretrainer.from_arguments(
        num_frames=4, image_size=32, patch_size=8, hidden_dim=48, depth=2, num_heads=4,
        mlp_dim=96, decoder_hidden_dim=32, decoder_depth=1, decoder_num_heads=2,
        decoder_mlp_dim=64, mask_ratio=0.75, decoder_mask_ratio=0.5),
], ids=["backbone-layer-scale-no-qv-bias", "classifier-mean-pooling",
        "classifier-first-token", "pretrainer-dual-masking"])
def test_parameters_equal_the_built_models_count(build):
    model = build()
    assert flops.count(model.arguments())["params"] == model.count_params()


def test_pretrainer_flops_count_visible_tokens_in_the_encoder():
    """The masked forward: the encoder sees only the visible tubes, so 90% masking costs far
    less than the classifier's full forward at the same size."""
    full = flops.count(_arguments("B16FT"))["flops"]
    masked = flops.count({**_arguments("B16PT"), "num_masked": 1411})["flops"]
    assert masked < 0.35 * full


def test_describe_names_the_architecture():
    line = flops.describe(_arguments("B16FT"), "classifier")
    assert line.startswith("ViT-B/16 classifier, 16x224x224, 12 blocks x 12 heads, 400 classes")
