"""The checkpoint registry and label maps: consistent, complete, and MODEL_ZOO.md in sync."""

import os
import subprocess
import sys

import pytest

import videomae_keras as vk
from videomae_keras import presets
from videomae_keras.checkpoints import cache as hub

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_entry_is_complete_and_consistent():
    names = presets.names()
    assert len(names) >= 36
    for name in names:
        info = presets.checkpoint(name)
        assert info["task"] in ("classifier", "pretrainer", "backbone"), name
        assert info["layout"] in ("official", "transformers"), name
        arch = info["architecture_name"]  # the size and task name an architecture preset
        size, task = presets.architecture(arch) if info["task"] != "backbone" else (arch, None)
        assert presets.SIZES[size].title == info["architecture"], name
        if task is not None:
            assert task == info["task"] and hasattr(vk, presets.factory_name(arch)), name
        for spec in info["files"]:
            urls = spec["url"] if isinstance(spec["url"], list) else [spec["url"]]
            assert all(u.startswith(("https://drive.google.com/", "https://huggingface.co/"))
                       for u in urls), name
            if spec.get("gdrive_id"):
                assert urls == [f"https://drive.google.com/uc?export=download&id={spec['gdrive_id']}"]
        if info["task"] == "classifier":
            assert 0 < info["top1"] <= 100 and info["num_classes"] in (101, 174, 400, 710), name
            if info["labels"]:
                assert len(presets.labels(info["labels"])) == info["num_classes"], name
            else:
                assert info["num_classes"] == 710 and info["label_index_map"], name


def test_the_zoo_is_covered():
    names = set(presets.names())
    official_v1 = {f"videomae-{s}-k400-{t}-1600e" for s in "sblh" for t in ("pt", "ft")}
    official_v1 |= {"videomae-b-k400-pt-800e", "videomae-b-k400-ft-800e",
                    "videomae-s-ssv2-pt-2400e", "videomae-s-ssv2-ft-2400e",
                    "videomae-b-ssv2-pt-800e", "videomae-b-ssv2-ft-800e",
                    "videomae-b-ssv2-pt-2400e", "videomae-b-ssv2-ft-2400e",
                    "videomae-b-ucf101-pt-3200e", "videomae-b-ucf101-ft-3200e"}
    v2 = {"videomaev2-g-hybrid-pt-1200e", "videomaev2-g-k710-ft", "videomaev2-g-ssv2-ft",
          "videomaev2-s-k710-distill", "videomaev2-b-k710-distill"}
    hub_repos = {n for n in names if n.startswith("MCG-NJU/")}
    assert official_v1 <= names and v2 <= names and len(hub_repos) == 13
    assert presets.checkpoint("videomae-h-k400-pt-1600e")["task"] == "backbone"  # encoder only
    assert presets.checkpoint("videomae-b-ucf101-pt-3200e")["model_args"]["mask_ratio"] == 0.75


def test_label_maps():
    k400, ssv2, ucf = (presets.labels(n) for n in ("kinetics400", "ssv2", "ucf101"))
    assert (len(k400), len(ssv2), len(ucf)) == (400, 174, 101)
    for names in (k400, ssv2, ucf):
        assert len(set(names)) == len(names) and all(n and n == n.strip() for n in names)
    assert list(k400) == sorted(k400) and k400[0] == "abseiling" and "eating spaghetti" in k400
    assert ssv2[0] == "Approaching something with your camera"
    assert ucf[0] == "ApplyEyeMakeup" and ucf[-1] == "YoYo"
    index = presets.label_index_map("kinetics710_to_kinetics400")
    assert len(index) == 400 and len(set(index)) == 400 and 0 <= min(index) and max(index) < 710
    assert presets.labels_for(174) == "ssv2" and presets.labels_for(7) is None


def test_unknown_names_get_suggestions():
    with pytest.raises(KeyError, match="Did you mean videomae-b-k400-ft-1600e"):
        presets.checkpoint("videomae-b-k400-ft-1600")


def test_endpoints_can_be_redirected(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:8080/")
    monkeypatch.setenv("VIDEOMAE_KERAS_GDRIVE_ENDPOINT", "http://127.0.0.1:8081")
    assert hub._address("https://huggingface.co/a/b/resolve/main/config.json") == (
        "http://127.0.0.1:8080/a/b/resolve/main/config.json")
    assert hub._address("https://drive.google.com/uc?export=download&id=X") == (
        "http://127.0.0.1:8081/uc?export=download&id=X")


def test_model_zoo_is_generated_from_the_registry():
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_model_zoo.py"),
                          "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    text = open(os.path.join(ROOT, "MODEL_ZOO.md"), encoding="utf-8").read()
    for name in presets.names():
        assert f"videomae-keras port {name} --out" in text
    assert "encoder only" in text and "16 heads" in text and "710" in text
