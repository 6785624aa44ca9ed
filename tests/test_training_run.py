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
    assert math.isfinite(summary["final_loss"]) and summary["arguments"]["epochs"] == 2
    assert summary["status"] == "finished" and summary["inputs"]["train_list"]["sha256"]
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
    assert summary["arguments"]["decoder_mask_ratio"] == 0.5
    assert math.isfinite(summary["final_loss"])
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


def test_command_line_finetunes_from_a_transformers_folder(synthetic, tmp_path, capsys):
    """The command reads a non-.keras source with from_pretrained and hands training the
    model; run.json still fingerprints the folder it came from."""
    import reference

    hf = reference.hf_model("pretrainer", seed=2, **dict(reference.SMALL, num_frames=8))
    hf.save_pretrained(tmp_path / "hf")
    code = cli.main(["finetune", synthetic["train"], "--pretrained", str(tmp_path / "hf"),
                     "--num-classes", "4", "--out", str(tmp_path / "ft"), "--epochs", "1",
                     "--batch-size", "4", "--sampling-rate", "2", "--workers", "1",
                     "--mixup", "0", "--cutmix", "0", "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "ft" / "run.json").read_text())
    assert record["inputs"]["pretrained"]["path"] == str(tmp_path / "hf")
    assert record["encoder_tensors_transferred"] > 0
    with pytest.raises(ValueError, match="not a .keras file"):  # Python: training parses none
        finetune(synthetic["train"], str(tmp_path / "py"), str(tmp_path / "hf"), 4, epochs=1,
                 **FINETUNE_RUN)
    assert not (tmp_path / "py").exists()  # refused before anything was written


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


def _stopped_then_rerun(synthetic, out, common, tear=False):
    """A run stopped before its second epoch (its backup then torn, as a kill while writing
    it would leave it, when `tear`), then the same command again; returns (model, stderr)."""
    with pytest.raises(_Interrupt):
        pretrain(synthetic["train"], str(out), callbacks=[_StopAtEpoch(1)], **common)
    assert os.listdir(out / "backup") == ["epoch-0001"]  # what the rerun resumes from
    if tear:
        weights = out / "backup" / "epoch-0001" / "state.weights.h5"
        with open(weights, "r+b") as f:
            f.truncate(os.path.getsize(weights) // 2)
    return pretrain(synthetic["train"], str(out), **common)


def _same_run(straight, resumed, out):
    with open(out / "log.csv") as f:
        epochs = [row.split(",")[0] for row in f.read().strip().splitlines()[1:]]
    assert epochs == ["0", "1"]  # each epoch trained and logged once
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b),
                                   atol=1e-6, err_msg=a.path)
    assert not (out / "backup").exists()


def test_an_interrupted_run_resumes_to_the_same_state(synthetic, tmp_path):
    common = dict(architecture="tiny", epochs=2, base_lr=1e-3, mask_ratio=0.75, **SMALL_RUN)
    straight = pretrain(synthetic["train"], str(tmp_path / "straight"), **common)
    resumed = _stopped_then_rerun(synthetic, tmp_path / "resumed", common)
    _same_run(straight, resumed, tmp_path / "resumed")


@pytest.mark.backend_independent
def test_a_torn_backup_is_named_and_the_run_starts_again(synthetic, tmp_path, capfd):
    """Every rerun used to fail on a torn backup ("truncated file"), forever. (Falling back to
    the backup before it: tests/test_training_backup.py.)"""
    common = dict(architecture="tiny", epochs=2, base_lr=1e-3, mask_ratio=0.75, **SMALL_RUN)
    straight = pretrain(synthetic["train"], str(tmp_path / "straight"), **common)
    capfd.readouterr()
    resumed = _stopped_then_rerun(synthetic, tmp_path / "torn", common, tear=True)
    err = capfd.readouterr().err
    assert "backup backup/epoch-0001 cannot be read" in err and "no readable backup is " \
        "left: training starts again from epoch 1 of 2" in err, err
    _same_run(straight, resumed, tmp_path / "torn")


PT_ARGS = ["--arch", "tiny", "--epochs", "1", "--batch-size", "4", "--num-frames", "8",
           "--image-size", "32", "--sampling-rate", "2", "--mask-ratio", "0.75", "--workers", "1",
           "--quiet"]


def _snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))
            if (folder / name).is_file()}


@pytest.mark.backend_independent
def test_a_run_folder_is_never_silently_overwritten(synthetic, tmp_path, capsys):
    out = tmp_path / "pt"
    assert cli.main(["pretrain", synthetic["train"], "--out", str(out), *PT_ARGS]) == 0
    capsys.readouterr()
    before = _snapshot(out)
    # the same command again: finished, nothing touched
    assert cli.main(["pretrain", synthetic["train"], "--out", str(out), *PT_ARGS]) == 0
    out_text, err = capsys.readouterr()
    assert "is a finished pretrain run" in err and "nothing to do" in err and out_text == ""
    assert _snapshot(out) == before
    # other settings, or another command: refused in one line, nothing touched
    changed = [a if a != "1" else "2" for a in PT_ARGS]  # --epochs 2
    assert cli.main(["pretrain", synthetic["train"], "--out", str(out), *changed]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "other settings (epochs 1 -> 2)" in err, err
    assert "--overwrite" in err
    assert cli.main(["finetune", synthetic["train"], "--pretrained", str(out / "pretrained.keras"),
                     "--num-classes", "4", "--out", str(out), "--quiet"]) == 2
    assert "it is a pretrain run, not finetune" in capsys.readouterr().err
    assert _snapshot(out) == before
    # with --overwrite: the old run goes, the new one is written
    assert cli.main(["pretrain", synthetic["train"], "--out", str(out), *changed,
                     "--overwrite"]) == 0
    assert "removed the previous run" in capsys.readouterr().err
    record = json.loads((out / "run.json").read_text())
    assert record["arguments"]["epochs"] == 2 and record["status"] == "finished"
    with open(out / "log.csv") as f:
        assert len(f.read().strip().splitlines()) == 3  # one run's two epochs, no leftovers


def _list(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


@pytest.mark.backend_independent
def test_lists_are_checked_before_the_first_step(pretrained_run, synthetic, tmp_path):
    """A bad validation list used to fail after training, before the model was saved."""
    from videomae_keras.data import AnnotationError, read_annotation_lines

    out, _ = pretrained_run
    entries = read_annotation_lines(synthetic["val"])
    good = [f"{e.video} {e.label}" for e in entries]
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(4000))
    cases = [
        (good[:2] + ["videos/missing.mp4 1"], "val.txt:3: ", "missing.mp4: no such file"),
        (good[:1] + [f"{garbage} 0"], "val.txt:2: ", "cannot read this video"),
        (good[:1] + [f"{entries[1].video} 7"], "val.txt:2: ", "label 7 lies outside 0..3"),
        ([], "val.txt", "lists no videos"),
    ]
    for lines, where, what in cases:
        run = tmp_path / "ft"
        with pytest.raises((AnnotationError, FileNotFoundError)) as error:
            finetune(synthetic["train"], str(run), str(out / "pretrained.keras"), 4,
                     val_list=_list(tmp_path / "val.txt", lines), epochs=1, **FINETUNE_RUN)
        message = str(error.value)
        assert where in message and what in message and "\n" not in message, message
        assert not run.exists() or os.listdir(run) == []  # nothing trained, nothing written


@pytest.mark.backend_independent
def test_an_evaluation_failure_keeps_the_trained_model(pretrained_run, synthetic, tmp_path,
                                                       monkeypatch):
    from videomae_keras.training import run as run_module

    out, _ = pretrained_run
    args = (synthetic["train"], str(tmp_path), str(out / "pretrained.keras"), 4)
    kwargs = dict(val_list=synthetic["val"], epochs=1, **FINETUNE_RUN)
    real = run_module.evaluate

    def broken(*a, **k):
        raise OSError("simulated: the disk holding the validation videos went away")

    monkeypatch.setattr(run_module, "evaluate", broken)
    with pytest.raises(run_module.EvaluationError, match="the model is saved .*finetuned.keras"):
        finetune(*args, **kwargs)
    assert (tmp_path / "finetuned.keras").exists() and not (tmp_path / "backup").exists()
    record = json.loads((tmp_path / "run.json").read_text())
    assert "went away" in record["evaluation_error"]
    log = (tmp_path / "log.csv").read_text()
    monkeypatch.setattr(run_module, "evaluate", real)
    model, results = finetune(*args, **kwargs)  # evaluates again; does not train again
    assert 0.0 <= results["val_top1"] <= 1.0 and "evaluation_error" not in results
    assert (tmp_path / "log.csv").read_text() == log
    _, again = finetune(*args, **kwargs)  # now finished: nothing to do
    assert again["val_top1"] == results["val_top1"]


@pytest.mark.backend_independent
def test_class_names_from_the_list_are_saved_in_the_model(pretrained_run, synthetic, tmp_path,
                                                          capsys):
    from videomae_keras.data import MOTION_CLASSES, read_annotation_lines

    out, _ = pretrained_run
    named = [f"{e.video}\t{MOTION_CLASSES[int(e.label)]}"
             for e in read_annotation_lines(synthetic["train"])]
    train = _list(tmp_path / "train_named.txt", named)
    model, _ = finetune(train, str(tmp_path / "ft"), str(out / "pretrained.keras"), epochs=1,
                        flip=False, **FINETUNE_RUN)
    assert model.class_names == tuple(sorted(MOTION_CLASSES))
    saved = keras.saving.load_model(tmp_path / "ft" / "finetuned.keras")
    assert saved.class_names == tuple(sorted(MOTION_CLASSES))
    video = read_annotation_lines(synthetic["val"])[0].video
    assert cli.main(["predict", video, "--weights", str(tmp_path / "ft" / "finetuned.keras"),
                     "--views", "1x1", "--top-k", "4", "--json", "--quiet"]) == 0
    top = json.loads(capsys.readouterr().out)["top"]
    assert sorted(t["label"] for t in top) == sorted(MOTION_CLASSES)
