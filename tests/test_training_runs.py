"""Whole runs on a small synthetic data set: pretrain -> finetune through the Python API and
the command line, resume files, a non-finite loss, and the shipped demo."""

import json
import math
import os

import numpy as np
import pytest

import keras

from videomae_keras import cli
from videomae_keras.data import make_synthetic_dataset
from videomae_keras.training.run import (
    NonFiniteLoss,
    StopOnNonFiniteLoss,
    classifier_from_pretrained,
    finetune,
    pretrain,
)

FINETUNE_RUN = dict(sampling_rate=2, batch_size=4, workers=1, progress=False)
SMALL_RUN = dict(FINETUNE_RUN, num_frames=8, image_size=32)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("data"), train_per_class=2,
                                  val_per_class=1, frames=24, seed=1)


@pytest.fixture(scope="module")
def pretrained_run(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    model = pretrain(synthetic["train"], str(out), "tiny", epochs=2, base_lr=1e-3,
                     mask_ratio=0.75, **SMALL_RUN)
    return out, model


def test_pretrain_writes_model_logs_and_summary(pretrained_run):
    out, model = pretrained_run
    assert model.num_masked == 4 * 3 * 4  # tube masking: 12 of 16 per slice, 4 slices
    restored = keras.saving.load_model(out / "pretrained.keras", safe_mode=True)
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    with open(out / "log.csv") as f:
        rows = f.read().strip().splitlines()
    assert rows[0].startswith("epoch") and len(rows) == 3
    summary = json.loads((out / "run.json").read_text())
    assert math.isfinite(summary["final_loss"]) and summary["epochs"] == 2
    assert not (out / "backup").exists()  # removed once the run completes


def test_finetune_transfers_the_encoder(pretrained_run, synthetic, tmp_path):
    out, pretrainer = pretrained_run
    classifier, count = classifier_from_pretrained(str(out / "pretrained.keras"), 4)
    source = {v.path: v for v in pretrainer.encoder.weights}
    assert count == len([v for v in classifier.encoder.weights if v.path in source])
    for variable in classifier.encoder.weights:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable),
                                      keras.ops.convert_to_numpy(source[variable.path]))
    head = keras.ops.convert_to_numpy(classifier.get_layer("head").weights[0])
    assert np.abs(head).max() < 0.01  # trunc-normal 0.02 scaled by init_scale 0.001
    model, results = finetune(synthetic["train"], str(tmp_path), str(out / "pretrained.keras"),
                              4, val_list=synthetic["val"], epochs=1, flip=False,
                              **FINETUNE_RUN)
    assert 0.0 <= results["val_top1"] <= 1.0
    assert (tmp_path / "finetuned.keras").exists()
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["val_top1"] == results["val_top1"]


def test_multi_view_evaluation_averages_softmax_over_views(pretrained_run, synthetic):
    """evaluate(views=) is the official test: per video, the view-averaged softmax of
    predict_video decides; checked against predict_video itself, video by video."""
    from videomae_keras import predict_video
    from videomae_keras.data import read_annotations
    from videomae_keras.training.run import evaluate

    out, _ = pretrained_run
    classifier, _ = classifier_from_pretrained(str(out / "pretrained.keras"), 4)
    keras.utils.set_random_seed(5)  # a head that is not near-uniform
    head = classifier.get_layer("head")
    head.kernel.assign(np.random.default_rng(5).normal(0, 1, head.kernel.shape))
    samples = read_annotations(synthetic["train"]) + read_annotations(synthetic["val"])
    expected = np.mean([
        predict_video(classifier, path, views=(2, 3), top_k=1, labels=False,
                      sampling_rate=2).top[0]["index"] == label for path, label in samples])
    got = evaluate(classifier, samples, 8, 32, 2, batch_size=4, views="2x3")
    assert got == expected
    single = evaluate(classifier, samples, 8, 32, 2, batch_size=4)
    assert 0.0 <= single <= 1.0


def test_finetune_rejects_labels_outside_the_head(pretrained_run, synthetic, tmp_path):
    out, _ = pretrained_run
    with pytest.raises(ValueError, match="outside 0..1"):
        finetune(synthetic["train"], str(tmp_path), str(out / "pretrained.keras"), 2,
                 epochs=1, **FINETUNE_RUN)


def test_non_finite_loss_stops_with_a_message():
    callback = StopOnNonFiniteLoss()
    callback.set_model(keras.Sequential([keras.layers.Dense(1)]))
    callback.on_epoch_begin(2)
    callback.on_train_batch_end(0, {"loss": 0.5})
    with pytest.raises(NonFiniteLoss, match="epoch 3, batch 5"):
        callback.on_train_batch_end(4, {"loss": float("nan")})


def test_command_line_pretrain_and_finetune(synthetic, tmp_path, capsys):
    code = cli.main(["pretrain", synthetic["train"], "--arch", "tiny", "--out",
                     str(tmp_path / "pt"), "--epochs", "1", "--batch-size", "4", "--num-frames",
                     "8", "--image-size", "32", "--sampling-rate", "2", "--mask-ratio", "0.75",
                     "--decoder-mask-ratio", "0.5", "--workers", "1", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "pretrained.keras" in out
    summary = json.loads((tmp_path / "pt" / "run.json").read_text())
    assert summary["decoder_mask_ratio"] == 0.5 and math.isfinite(summary["final_loss"])
    dual = keras.saving.load_model(tmp_path / "pt" / "pretrained.keras")
    assert dual.decoder_mask_ratio == 0.5 and len(dual.inputs) == 3
    code = cli.main(["finetune", synthetic["train"], "--pretrained",
                     str(tmp_path / "pt" / "pretrained.keras"), "--num-classes", "4",
                     "--val-list", synthetic["val"], "--out", str(tmp_path / "ft"), "--epochs",
                     "1", "--batch-size", "4", "--sampling-rate", "2", "--no-flip",
                     "--test-views", "2x3", "--workers", "1", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "validation top-1" in out and "(2x3 views)" in out
    assert os.path.exists(tmp_path / "ft" / "finetuned.keras")


def test_demo_runs_offline_on_the_shipped_models(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VIDEOMAE_KERAS_OFFLINE", "1")
    code = cli.main(["demo", "--out", str(tmp_path / "demo"), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    png = tmp_path / "demo" / "demo_clip.reconstruction.png"
    assert png.exists() and (tmp_path / "demo" / "demo_clip.reconstruction.gif").exists()
    assert f"wrote {png}" in out and "moving" in out
    from videomae_keras.demo import demo_files

    with open(demo_files()["report"]) as f:
        report = json.load(f)
    assert f"1. {report['sample_clip_label']}" in out  # the shipped model gets it right




def test_shipped_pretrained_model_reconstructs_far_below_the_trivial_predictors(tmp_path):
    """The shipped tiny model on fresh held-out-style clips (a seed the training run never
    drew), scored as train_demo_models.py scores it: masked-patch MSE well below filling the
    masked pixels with the data set's mean colour, and below the clip's own mean colour."""
    import sys

    from videomae_keras.data import read_annotations
    from videomae_keras.demo import demo_files

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools"))
    try:
        import train_demo_models as tool
    finally:
        sys.path.pop(0)
    data = make_synthetic_dataset(tmp_path, train_per_class=8, val_per_class=8, seed=123)
    model = keras.saving.load_model(demo_files()["pretrainer"])
    losses = tool.reconstruction_losses(model, read_annotations(data["val"]),
                                        tool.mean_colour(read_annotations(data["train"])))
    assert losses["model"] < 0.7 * losses["data-set mean"]  # 0.56 on the 128 held-out clips
    assert losses["model"] < 0.9 * losses["clip mean"]  # 0.77 there

class _Interrupt(Exception):
    pass


class _StopAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.stop_epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.stop_epoch:
            raise _Interrupt(f"stopped before epoch {epoch + 1}")


def test_an_interrupted_run_resumes_to_the_same_state(synthetic, tmp_path):
    common = dict(architecture="tiny", epochs=2, base_lr=1e-3, mask_ratio=0.75, **SMALL_RUN)
    straight = pretrain(synthetic["train"], str(tmp_path / "straight"), **common)
    with pytest.raises(_Interrupt):
        pretrain(synthetic["train"], str(tmp_path / "resumed"), callbacks=[_StopAtEpoch(1)],
                 **common)
    assert (tmp_path / "resumed" / "backup").exists()  # what the rerun resumes from
    resumed = pretrain(synthetic["train"], str(tmp_path / "resumed"), **common)
    with open(tmp_path / "resumed" / "log.csv") as f:
        epochs = [row.split(",")[0] for row in f.read().strip().splitlines()[1:]]
    assert epochs == ["0", "1"]  # the rerun trained the missing epoch only
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b),
                                   atol=1e-6, err_msg=a.path)
