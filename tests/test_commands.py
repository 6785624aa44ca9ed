"""`videomae-keras predict | features | reconstruct`: outputs, weights of every kind, and
one-line errors without tracebacks."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import reference
from videomae_keras import cli, presets
from videomae_keras.convert import from_pretrained
from videos import moving_frames, write_video

SMALL_400 = dict(reference.SMALL, num_labels=400)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    classifier = reference.hf_model("classifier", seed=1, **SMALL_400)
    classifier.save_pretrained(folder / "classifier")
    pretrainer = reference.hf_model("pretrainer", seed=2, **reference.SMALL)
    pretrainer.save_pretrained(folder / "pretrainer")
    frames = moving_frames(50, 40, 60)
    videos = {
        "mp4": write_video(folder / "walk.mp4", frames, "mp4v"),
        "avi": write_video(folder / "run.avi", frames[:20], "MJPG"),
    }
    broken = folder / "broken.mp4"
    broken.write_bytes(b"\x00\x01 not a video " * 100)
    return {"folder": folder, "classifier": str(folder / "classifier"),
            "pretrainer": str(folder / "pretrainer"), "broken": str(broken), **videos}


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_json_with_kinetics_labels(fixtures, capsys):
    code, out, err = run(capsys, "predict", fixtures["mp4"], "--weights", fixtures["classifier"],
                         "--views", "2x3", "--top-k", "3", "--json", "--quiet")
    assert code == 0, err
    result = json.loads(out)
    assert result["views"] == "2x3" and result["sampling"] == "dense"
    names = presets.labels("kinetics400")
    assert len(result["top"]) == 3
    probabilities = [t["probability"] for t in result["top"]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0
    for item in result["top"]:
        assert item["label"] == names[item["index"]]
    # the same as the Python API on the same weights
    from videomae_keras import predict_video

    expected = predict_video(from_pretrained(fixtures["classifier"]), fixtures["mp4"],
                             views=(2, 3), top_k=3)
    assert [t["index"] for t in result["top"]] == [t["index"] for t in expected.top]
    np.testing.assert_allclose(probabilities, [t["probability"] for t in expected.top],
                               atol=1e-5)


def test_predict_speed_options(fixtures, capsys):
    """--jit on, --int8 and --mixed-precision run and agree with the plain float32 result
    (int8 and bfloat16 approximately)."""
    base = ["predict", fixtures["mp4"], "--weights", fixtures["classifier"], "--views", "1x1",
            "--top-k", "400", "--json", "--quiet"]
    code, out, err = run(capsys, *base, "--jit", "off")
    assert code == 0, err
    plain = {t["index"]: t["probability"] for t in json.loads(out)["top"]}
    import keras

    speed_flags = [["--int8"], ["--mixed-precision"]]
    if keras.backend.backend() != "torch":  # torch.compile: tested in test_inference
        speed_flags.append(["--jit", "on"])
    for extra in speed_flags:
        code, out, err = run(capsys, *base, *extra)
        assert code == 0, (extra, err)
        other = {t["index"]: t["probability"] for t in json.loads(out)["top"]}
        tolerance = 1e-5 if extra[0] == "--jit" else 0.02
        assert max(abs(plain[i] - other[i]) for i in plain) < tolerance, extra


def test_predict_text_several_videos_and_keras_file(fixtures, capsys, tmp_path):
    model = from_pretrained(fixtures["classifier"])
    keras_file = tmp_path / "model.keras"
    model.save(keras_file)
    code, out, err = run(capsys, "predict", fixtures["mp4"], fixtures["avi"], "--weights",
                         keras_file, "--views", "1x1", "--top-k", "2")
    assert code == 0, err
    assert "walk.mp4 (1x1 views, dense)" in out and "run.avi" in out
    assert "  1. " in out and "  2. " in out
    assert "[1/3] loading" in err  # progress on stderr


def test_predict_weights_h5_needs_arch(fixtures, capsys, tmp_path):
    import keras

    from videomae_keras import VideoMAE_ViTS16FT

    model = VideoMAE_ViTS16FT(num_classes=5, num_frames=4, image_size=32)
    path = tmp_path / "s.weights.h5"
    model.save_weights(path)
    code, _, err = run(capsys, "predict", fixtures["mp4"], "--weights", path, "--quiet")
    assert code == 2 and "architecture" in err and "--arch" in err
    loaded = from_pretrained(str(path), architecture="S16FT", num_classes=5, num_frames=4,
                             image_size=32)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))
    code, _, err = run(capsys, "predict", fixtures["mp4"], "--weights", path, "--arch", "B16FT",
                       "--num-classes", "5", "--quiet")
    assert code == 2 and "do not fit" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["missing", "broken"])
def test_predict_video_errors_are_one_line(fixtures, capsys, kind):
    video = fixtures["broken"] if kind == "broken" else os.path.join(fixtures["folder"], "no.mp4")
    code, out, err = run(capsys, "predict", video, "--weights", fixtures["classifier"],
                         "--quiet")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and video in lines[0] and lines[0].startswith("videomae-keras predict")
    assert "Traceback" not in err


def test_predict_keeps_going_past_a_broken_video(fixtures, capsys, tmp_path):
    cut = tmp_path / "cut.mp4"
    with open(fixtures["mp4"], "rb") as f:
        cut.write_bytes(f.read()[:300])
    code, out, err = run(capsys, "predict", fixtures["avi"], str(cut), "--weights",
                         fixtures["classifier"], "--views", "1x1", "--json", "--quiet")
    assert code == 2
    results = json.loads(out)
    assert "top" in results[0] and str(cut) in results[1]["error"]
    assert str(cut) in err


def test_bad_weights_are_one_line(fixtures, capsys, tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    code, _, err = run(capsys, "predict", fixtures["mp4"], "--weights", garbage, "--quiet")
    assert code == 2 and str(garbage) in err and len(err.strip().splitlines()) == 1
    broken_keras = tmp_path / "broken.keras"
    broken_keras.write_bytes(b"PK\x03\x04 nonsense")
    code, _, err = run(capsys, "predict", fixtures["mp4"], "--weights", broken_keras, "--quiet")
    assert code == 2 and str(broken_keras) in err and "Traceback" not in err


def test_default_weights_offline_say_how_to_get_them(fixtures, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOMAE_KERAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VIDEOMAE_KERAS_OFFLINE", "1")
    code, _, err = run(capsys, "predict", fixtures["mp4"], "--quiet")
    assert code == 2 and cli.DEFAULT_CLASSIFIER in err and "offline" in err.lower()


def test_features_npz(fixtures, capsys, tmp_path):
    out = tmp_path / "walk.npz"
    code, stdout, err = run(capsys, "features", fixtures["mp4"], "--weights",
                            fixtures["classifier"], "--out", out, "--views", "2x1", "--quiet")
    assert code == 0, err
    with np.load(out) as data:
        assert data["pooled"].shape == (2, 48) and data["tokens"].shape == (2, 32, 48)
        assert data["embedding"].shape == (48,) and data["frame_indices"].shape == (2, 4)
    assert str(out) in stdout
    code, _, err = run(capsys, "features", fixtures["mp4"], "--weights", fixtures["classifier"],
                       "--out", out, "--quiet")
    assert code == 2 and "--overwrite" in err
    folder = tmp_path / "many"
    code, _, err = run(capsys, "features", fixtures["mp4"], fixtures["avi"], "--weights",
                       fixtures["classifier"], "--out", folder, "--no-tokens", "--quiet")
    assert code == 0, err
    assert sorted(os.listdir(folder)) == ["run.features.npz", "walk.features.npz"]
    with np.load(folder / "run.features.npz") as data:
        assert "tokens" not in data


def test_reconstruct_writes_png_and_gif(fixtures, capsys, tmp_path):
    code, out, err = run(capsys, "reconstruct", fixtures["mp4"], "--weights",
                         fixtures["pretrainer"], "--out", tmp_path, "--quiet")
    assert code == 0, err
    png, gif = tmp_path / "walk.reconstruction.png", tmp_path / "walk.reconstruction.gif"
    assert png.exists() and gif.exists()
    assert f"wrote {png}" in out and f"wrote {gif}" in out and "norm-pix MSE" in out
    code, out, err = run(capsys, "reconstruct", fixtures["mp4"], "--weights",
                         fixtures["pretrainer"], "--out", tmp_path, "--quiet", "--json",
                         "--overwrite", "--no-gif", "--mask-ratio", "0.5", "--seed", "3")
    assert code == 0, err
    report = json.loads(out)
    assert report["masked_tokens"] == 16 and report["tokens"] == 32 and len(report["files"]) == 1


def test_reconstruct_honours_the_mask_ratio_of_a_keras_file(capsys, tmp_path):
    """--mask-ratio was ignored without a word for `.keras` pretraining models."""
    from videomae_keras.demo import demo_files

    results = {}
    for ratio in ("0.75", "0.5"):
        code, out, err = run(capsys, "reconstruct", demo_files()["clip"], "--weights",
                             demo_files()["pretrainer"], "--out", tmp_path / ratio, "--quiet",
                             "--json", "--no-gif", "--mask-ratio", ratio, "--sampling-rate", "2")
        assert code == 0, err
        results[ratio] = json.loads(out)
    assert results["0.75"]["masked_tokens"] == 96 and results["0.5"]["masked_tokens"] == 64
    assert results["0.5"]["tokens"] == 128


def test_reconstruct_rejects_a_classifier(fixtures, capsys, tmp_path):
    code, _, err = run(capsys, "reconstruct", fixtures["mp4"], "--weights",
                       fixtures["classifier"], "--out", tmp_path, "--quiet")
    assert code == 2 and "pretraining model" in err
    assert not list(tmp_path.iterdir())


def test_explain_writes_the_pictures_and_names_the_class(capsys, tmp_path):
    from videomae_keras.demo import demo_files

    code, out, err = run(capsys, "explain", demo_files()["clip"], "--weights",
                         demo_files()["classifier"], "--out", tmp_path, "--quiet",
                         "--sampling-rate", "2")
    assert code == 0, err
    names = ["demo_clip.gradcam.gif", "demo_clip.gradcam.mp4", "demo_clip.gradcam.png"]
    assert sorted(os.listdir(tmp_path)) == names
    assert "moving right" in out and "gradcam" in out
    code, out, err = run(capsys, "explain", demo_files()["clip"], "--weights",
                         demo_files()["classifier"], "--out", tmp_path, "--quiet", "--json",
                         "--method", "rollout", "--target", "moving up", "--no-gif", "--no-mp4",
                         "--sampling-rate", "2")
    assert code == 0, err
    report = json.loads(out)
    assert report["label"] == "moving up" and report["target"] == 3
    assert [os.path.basename(f) for f in report["files"]] == ["demo_clip.rollout.png"]
    # nothing is overwritten unasked, and a wrong class is one line
    code, _, err = run(capsys, "explain", demo_files()["clip"], "--weights",
                       demo_files()["classifier"], "--out", tmp_path, "--quiet")
    assert code == 2 and "--overwrite" in err and "Traceback" not in err
    code, _, err = run(capsys, "explain", demo_files()["clip"], "--weights",
                       demo_files()["classifier"], "--out", tmp_path / "new", "--quiet",
                       "--target", "flying")
    assert code == 2 and "not a class name" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()


def test_explain_rejects_a_pretrainer(fixtures, capsys, tmp_path):
    code, _, err = run(capsys, "explain", fixtures["mp4"], "--weights",
                       fixtures["pretrainer"], "--out", tmp_path, "--quiet")
    assert code == 2 and "needs a classifier" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command, words", [
    ("predict", ["--weights", "--views", "--top-k", "--json", "5x3"]),
    ("explain", ["--target", "--method", "rollout", "gradcam", "--no-mp4"]),
    ("features", ["--out", "--no-tokens", "--views"]),
    ("reconstruct", ["--mask-ratio", "--no-gif", "official visualisation"]),
])
def test_help(command, words, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for word in words:
        assert word in text


def test_console_command_error_has_no_traceback(tmp_path):
    """The real console path: a fresh process, one line on stderr, exit 2."""
    missing = tmp_path / "nothing.mp4"
    env = dict(os.environ, VIDEOMAE_KERAS_OFFLINE="1")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # a user's plain environment (tf2onnx changes it)
    command = shutil.which("videomae-keras", path=os.path.dirname(sys.executable))
    process = subprocess.run([command, "predict", str(missing), "--quiet"],
                             capture_output=True, text=True, env=env)
    assert process.returncode == 2
    assert process.stderr.strip() == f"videomae-keras predict: error: {missing}: no such file."
