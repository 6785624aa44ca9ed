"""Linear probing: features cached once and resumed after an interruption, a head over raw
features, and a probe that tells good features from random ones on the synthetic data."""

import json
import os

import numpy as np
import pytest

import keras
import videomae_keras as vk
from videomae_keras import cli, probe
from videomae_keras.data.synthetic import make_synthetic_dataset
from videomae_keras.demo import demo_files


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Fresh synthetic clips (seed 1; the demo models were trained on seed 0's)."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("probe"), train_per_class=16,
                                  val_per_class=8, seed=1)


@pytest.fixture(scope="module")
def demo():
    return vk.from_pretrained(demo_files()["classifier"])


def test_trained_features_probe_far_above_random_ones(data, demo, tmp_path):
    """The shipped pretraining-only demo encoder (masked reconstruction, no label seen) and
    the demo classifier's encoder know the four motions: their frozen features probe to
    (nearly) every validation clip; a random encoder of the same shape stays near chance."""
    pretrained = vk.linear_probe(vk.from_pretrained(demo_files()["pretrainer"]), data["train"],
                                 data["val"], cache_dir=tmp_path, sampling_rate=2)
    trained = vk.linear_probe(demo.backbone, data["train"], data["val"],
                              cache_dir=tmp_path, sampling_rate=2)
    random = vk.VideoMAEBackbone.from_arguments(**demo.backbone.arguments())
    untrained = vk.linear_probe(random, data["train"], data["val"], cache_dir=tmp_path,
                                sampling_rate=2)
    print(f"pretrained {pretrained.top1:.3f}, fine-tuned {trained.top1:.3f}, "
          f"random {untrained.top1:.3f}")
    assert pretrained.top1 >= 0.9, pretrained
    assert trained.top1 >= 0.9, trained
    assert untrained.top1 <= 0.6, untrained
    assert trained.num_train == 64 and trained.num_val == 32 and trained.num_classes == 4
    assert len({pretrained.cache, trained.cache, untrained.cache}) == 3  # a folder each


@pytest.mark.backend_independent  # the cache is numpy files; the model only fills them
def test_features_are_cached_and_an_interrupted_run_resumes(data, demo, tmp_path,
                                                             monkeypatch):
    monkeypatch.setattr(probe, "PART_SIZE", 16)  # 4 parts for the 64 training videos
    computed = []
    original = probe._compute

    def counting(extractor, videos, *args):
        computed.append(len(videos))
        if len(computed) == 3 and not getattr(counting, "resumed", False):
            raise KeyboardInterrupt  # stopped while the third part is computed
        return original(extractor, videos, *args)

    monkeypatch.setattr(probe, "_compute", counting)
    with pytest.raises(KeyboardInterrupt):
        vk.linear_probe(demo, data["train"], data["val"], cache_dir=tmp_path, sampling_rate=2)
    counting.resumed = True
    computed.clear()
    first = vk.linear_probe(demo, data["train"], data["val"], cache_dir=tmp_path,
                            sampling_rate=2)
    assert computed == [16, 16, 16, 16]  # the two parts written before the stop are reused
    computed.clear()
    again = vk.linear_probe(demo, data["train"], data["val"], cache_dir=tmp_path,
                            sampling_rate=2)
    assert computed == [] and again.top1 == first.top1  # everything from the cache
    leftovers = [n for n in os.listdir(os.path.join(first.cache, "train"))
                 if not n.startswith("part-")]
    assert leftovers == []  # no half-written part survives the interruption


def test_the_head_works_on_raw_features():
    """The standardisation is folded into the head: the same predictions as the trained
    Dense layer on standardised features."""
    rng = np.random.default_rng(0)
    features = rng.normal(3.0, 5.0, (80, 6)).astype(np.float32)
    labels = (features[:, 0] > 3.0).astype(int)
    head = probe.train_linear_head(features, labels, 2, epochs=200)
    predictions = np.argmax(np.asarray(head.predict_on_batch(features)), axis=1)
    assert np.mean(predictions == labels) >= 0.95


@pytest.mark.backend_independent
def test_probe_command(data, capsys, tmp_path):
    argv = ["probe", data["train"], "--val-list", data["val"], "--weights",
            demo_files()["classifier"], "--sampling-rate", "2", "--cache", str(tmp_path / "c"),
            "--out", str(tmp_path / "out"), "--json", "--quiet"]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["val_top1"] >= 0.9 and report["num_classes"] == 4
    assert sorted(os.listdir(tmp_path / "out")) == ["probe.json", "probe.keras"]
    loaded = keras.saving.load_model(str(tmp_path / "out" / "probe.keras"))
    assert loaded.output_shape == (None, 4)
    code = cli.main(argv)  # the outputs exist: refused without --overwrite
    _, err = capsys.readouterr()
    assert code == 2 and "--overwrite" in err
    code = cli.main(["probe", str(tmp_path / "none.txt"), "--val-list", data["val"],
                     "--quiet"])
    _, err = capsys.readouterr()
    assert code == 2 and "no such annotation file" in err
