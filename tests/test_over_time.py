"""Windows over time: the plan (frames, strides, seconds), each window's embedding against
`extract_features` of the same frames, streaming decoders, bounded memory on a long video,
and the commands."""

import json
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

import videomae_keras as vk
from videomae_keras import cli, over_time
from videomae_keras.demo import demo_files
from videomae_keras.over_time import features_over_time, plan_windows, predict_over_time
from videomae_keras.video.io import VideoReader, available_backends
from videos import moving_frames, write_video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def demo():
    return vk.from_pretrained(demo_files()["classifier"])


@pytest.mark.backend_independent
def test_plan_counts_sampled_frames_and_gives_seconds():
    plan = plan_windows(100, 25.0, 16, sampling_rate=2, window=16, stride=8)
    assert list(plan.sampled[:3]) == [0, 2, 4] and len(plan.sampled) == 50
    assert list(plan.starts) == [0, 8, 16, 24, 32]  # the last window ends at sampled 47
    np.testing.assert_array_equal(plan.frame_indices[1], np.arange(16, 48, 2))
    starts, ends = plan.seconds()
    np.testing.assert_allclose(starts, [0.0, 0.64, 1.28, 1.92, 2.56])
    np.testing.assert_allclose(ends, np.asarray([32, 48, 64, 80, 96]) / 25.0)
    # seconds: 1 s = 12.5 sampled frames -> 12 (rounded); a 32-frame window spread over 16
    by_time = plan_windows(100, 25.0, 16, 2, window_seconds=1.0, stride_seconds=0.5)
    assert by_time.window == 12 and by_time.stride == 6
    wide = plan_windows(200, 25.0, 16, 1, window=32, stride=32)
    np.testing.assert_array_equal(wide.frame_indices[0],
                                  np.round(np.linspace(0, 31, 16)).astype(int))
    short = plan_windows(10, 25.0, 16, 1)  # shorter than a window: one, its last repeated
    assert len(short.starts) == 1 and list(short.frame_indices[0][-7:]) == [9] * 7


@pytest.mark.backend_independent
def test_plan_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="not both"):
        plan_windows(100, 25.0, 16, window=8, window_seconds=1.0)
    with pytest.raises(ValueError, match="no frame rate"):
        plan_windows(100, 0.0, 16, window_seconds=1.0)
    with pytest.raises(ValueError, match="stride must be a whole number"):
        plan_windows(100, 25.0, 16, stride=0)


@pytest.mark.backend_independent
def test_streaming_gives_the_frames_read_gives(tmp_path):
    path = write_video(tmp_path / "v.mp4", moving_frames(40), "mp4v")
    wanted = [0, 3, 4, 17, 39]
    for backend in available_backends():
        with VideoReader(path, backend) as reader:
            expected = reader.read(wanted)
            streamed = list(reader.iter_frames(wanted + [50], chunk=2))  # 50: past the end
        assert [i for i, _ in streamed] == wanted, backend
        np.testing.assert_array_equal(np.stack([f for _, f in streamed]), expected)


def test_each_window_is_the_clip_of_its_frames(demo, monkeypatch):
    frames = vk.read_video(vk.sample_video())
    opened = []
    original = over_time.VideoReader.__init__

    def counting(self, *args, **kwargs):
        opened.append(args[0])
        original(self, *args, **kwargs)

    monkeypatch.setattr(over_time.VideoReader, "__init__", counting)
    result = features_over_time(demo, vk.sample_video(), sampling_rate=1, stride=4,
                                batch_size=3)
    assert len(opened) == 1  # the length and the frames from one opening
    assert result.embeddings.shape == (5, demo.architecture["hidden_dim"])
    np.testing.assert_allclose(result.start_seconds, np.arange(5) * 4 / 25.0)
    for w in (0, 4):
        alone = vk.extract_features(demo, frames[result.frame_indices[w]], sampling_rate=1)
        np.testing.assert_allclose(result.embeddings[w], alone.pooled[0], atol=1e-5)


def test_an_open_reader_gives_the_files_windows_and_stays_open(demo):
    with VideoReader(vk.sample_video(), prefer="pyav") as reader:
        result = features_over_time(demo, reader, sampling_rate=1, stride=8, batch_size=3)
        assert len(reader.read([0])) == 1  # still open: the caller closes it
    expected = features_over_time(demo, vk.sample_video(), sampling_rate=1, stride=8,
                                  batch_size=3)
    assert result.source == expected.source == vk.sample_video()
    np.testing.assert_allclose(result.start_seconds, expected.start_seconds)
    np.testing.assert_allclose(result.embeddings, expected.embeddings, atol=1e-6)


def test_predictions_over_time_and_their_timeline(demo, tmp_path):
    result = predict_over_time(demo, vk.sample_video(), sampling_rate=1, stride=8, top_k=2)
    assert result.probabilities.shape == (3, 4)
    np.testing.assert_allclose(result.probabilities.sum(1), 1.0, atol=1e-6)
    assert all(result.top(w)[0]["label"] == "moving right" for w in range(3))
    report = result.to_dict()
    assert [w["start_seconds"] for w in report["windows"]] == [0.0, 0.32, 0.64]
    picture = result.timeline()
    assert picture.ndim == 3 and picture.shape[1] >= 720
    assert os.path.exists(result.save_timeline(tmp_path / "t.png"))


@pytest.mark.backend_independent
def test_memory_does_not_grow_with_the_video(tmp_path):
    """A 96-second 320x240 video (527 MiB of decoded frames) goes through in a child process
    at about the peak memory of a 12-second one: the stream keeps a window, not the video."""
    frames = moving_frames(48, 240, 320)
    paths = {}
    for name, count in (("short", 300), ("long", 2400)):
        paths[name] = str(tmp_path / f"{name}.mp4")
        writer = cv2.VideoWriter(paths[name], cv2.VideoWriter_fourcc(*"mp4v"), 25.0,
                                 (320, 240))
        for i in range(count):
            writer.write(cv2.cvtColor(frames[i % 48], cv2.COLOR_RGB2BGR))
        writer.release()
    code = textwrap.dedent(f"""
        import json
        import videomae_keras as vk
        from videomae_keras.demo import demo_files
        from videomae_keras.over_time import features_over_time

        def status(field):
            for line in open("/proc/self/status"):
                if line.startswith(field):
                    return int(line.split()[1]) / 1024

        model = vk.from_pretrained(demo_files()["classifier"])
        features_over_time(model, {paths["short"]!r}, sampling_rate=4, stride=16)  # warm up
        answer = {{}}
        for name, path in (("short", {paths["short"]!r}), ("long", {paths["long"]!r})):
            open("/proc/self/clear_refs", "w").write("5")
            base = status("VmRSS")
            result = features_over_time(model, path, sampling_rate=4, stride=16)
            answer[name] = {{"peak_mb": status("VmHWM") - base,
                            "windows": len(result.embeddings)}}
        print(json.dumps(answer))
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600, env=dict(os.environ, PYTHONPATH=ROOT))
    assert run.returncode == 0, run.stderr[-2000:]
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    assert answer["long"]["windows"] == (600 - 16) // 16 + 1
    decoded_mb = 2400 * 240 * 320 * 3 / 2**20
    print(f"peak {answer['long']['peak_mb']:.1f} MiB for the 96 s video "
          f"({decoded_mb:.0f} MiB decoded), {answer['short']['peak_mb']:.1f} MiB for 12 s")
    # growing with the video would add ~460 MiB between the two; measured: under 2 MiB
    assert answer["long"]["peak_mb"] < answer["short"]["peak_mb"] + 24, answer
    assert answer["long"]["peak_mb"] < decoded_mb / 10, answer


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_features_and_predict_commands_over_time(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weights = ["--weights", demo_files()["classifier"], "--sampling-rate", "1", "--quiet"]
    code, out, err = _run(capsys, "features", vk.sample_video(), *weights, "--window", "16",
                          "--stride", "8", "--out", tmp_path / "f.npz", "--json")
    assert code == 0, err
    saved = np.load(tmp_path / "f.npz")
    assert saved["embeddings"].shape == (3, 96)
    np.testing.assert_allclose(saved["start_seconds"], [0.0, 0.32, 0.64])
    report = json.loads(out)
    assert len(report["windows"]) == 3 and len(report["windows"][0]["embedding"]) == 96
    code, out, err = _run(capsys, "predict", vk.sample_video(), *weights, "--over-time",
                          "--window-seconds", "0.64", "--stride-seconds", "0.32")
    assert code == 0, err
    assert "moving right" in out and os.path.exists("demo_clip.timeline.png")
    code, _, err = _run(capsys, "predict", vk.sample_video(), *weights, "--over-time")
    assert code == 2 and "--overwrite" in err  # the timeline is not replaced unasked
    code, _, err = _run(capsys, "predict", vk.sample_video(), *weights, "--stride", "4")
    assert code == 2 and "go with --over-time" in err
    code, _, err = _run(capsys, "features", vk.sample_video(), *weights, "--stride", "4",
                        "--views", "2x3", "--out", tmp_path / "g.npz")
    assert code == 2 and "drop --views" in err and not (tmp_path / "g.npz").exists()
