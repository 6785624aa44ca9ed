"""Registered checkpoints by name, against an HTTP server on 127.0.0.1 that plays the Hugging
Face Hub and Google Drive (including its 'download anyway' page): download, check, convert
once, then load offline; and every way a download can go wrong."""

import copy
import hashlib
import http.server
import os
import threading
import urllib.parse

import numpy as np
import pytest
import torch

import reference
import videomae_keras as vk
from videomae_keras import cli, presets
from videomae_keras.checkpoints import cache as hub

VIT_S_HF = dict(hidden_size=384, num_attention_heads=16, intermediate_size=1536, num_labels=400)
VIT_S_OFFICIAL = dict(hidden_size=384, num_attention_heads=6, intermediate_size=1536, num_labels=400)


COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Server:
    """Serves registered byte strings by path; Google Drive ids go through a confirm page.
    Hub paths (/REPO/resolve/REV/FILE) answer as the Hub does for huggingface_hub: HEAD with
    the commit and ETag, EntryNotFound for missing files, byte ranges for resumed downloads."""

    def __init__(self):
        self.files = {}  # path -> bytes
        self.drive = {}  # id -> bytes
        self.requests = []
        self.headers = []  # (method, path, headers) of every request
        self.truncate = set()
        self.quota = set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._answer(head=True)

            def do_GET(self):
                self._answer(head=False)

            def _answer(self, head):
                url = urllib.parse.urlparse(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                server.requests.append(self.path)
                server.headers.append((self.command, url.path,
                                       {k.lower(): v for k, v in self.headers.items()}))
                if url.path == "/uc" and query.get("id") in server.drive:
                    if query["id"] in server.quota:
                        return self._send(200, b"<html>Google Drive - Quota exceeded</html>", "text/html")
                    form = (
                        '<html><body><form id="download-form" action="/download" method="get">'
                        f'<input type="hidden" name="id" value="{query["id"]}">'
                        '<input type="hidden" name="export" value="download">'
                        '<input type="hidden" name="confirm" value="t">'
                        '<input type="hidden" name="uuid" value="1234-abcd">'
                        "</form></body></html>"
                    ).encode()
                    return self._send(200, form, "text/html; charset=utf-8")
                if url.path == "/download" and query.get("confirm") == "t" and query.get("uuid"):
                    return self._send(200, server.drive[query["id"]], "application/octet-stream")
                hub = "/resolve/" in url.path
                if url.path in server.files:
                    body = server.files[url.path]
                    extra = {"X-Repo-Commit": COMMIT,
                             "ETag": '"%s"' % hashlib.sha256(body).hexdigest()} if hub else {}
                    start = 0
                    wanted = self.headers.get("Range", "")
                    if wanted.startswith("bytes=") and not head:
                        start = int(wanted[6:].split("-")[0] or 0)
                        extra["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
                    part = body[start:]
                    if url.path in server.truncate and not head:
                        return self._send(206 if start else 200, part[: len(part) // 2],
                                          "application/octet-stream", length=len(part),
                                          extra=extra)
                    return self._send(206 if start else 200, part, "application/octet-stream",
                                      extra=extra, head=head)
                extra = {"X-Error-Code": "EntryNotFound"} if hub else {}
                self._send(404, b"not found", "text/plain", extra=extra, head=head)

            def _send(self, code, body, kind, length=None, extra=None, head=False):
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(length or len(body)))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def gets(self, suffix):
        """GET requests for paths ending with `suffix`."""
        return [h for m, p, h in self.headers if m == "GET" and p.endswith(suffix)]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    server = Server()
    monkeypatch.setenv("VIDEOMAE_KERAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("VIDEOMAE_KERAS_GDRIVE_ENDPOINT", server.url)
    monkeypatch.delenv("VIDEOMAE_KERAS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.stop()


def _serve_hf_folder(server, repo, folder, weights=("model.safetensors",)):
    for name in ("config.json", *weights):
        with open(os.path.join(folder, name), "rb") as f:
            server.files[f"/{repo}/resolve/main/{name}"] = f.read()


def test_hub_checkpoint_downloads_converts_and_loads_offline(server, tmp_path, monkeypatch, record_parity):
    """MCG-NJU/videomae-small-finetuned-kinetics: 16 heads per its config.json."""
    hf = reference.hf_model("classifier", seed=51, **VIT_S_HF)
    hf.save_pretrained(str(tmp_path / "hf"))
    _serve_hf_folder(server, "MCG-NJU/videomae-small-finetuned-kinetics", str(tmp_path / "hf"))
    pixels, video = reference.random_video(VIT_S_HF, batch=1, seed=52)
    expected = reference.hf_outputs(hf, pixels)

    model = vk.from_pretrained("MCG-NJU/videomae-small-finetuned-kinetics")
    assert model.encoder.num_heads == 16
    assert record_parity("logits", model(video), expected) <= 1e-5
    cached = hub.converted_path("MCG-NJU/videomae-small-finetuned-kinetics")
    assert os.path.exists(cached)

    server.stop()  # no network from here on
    monkeypatch.setenv("VIDEOMAE_KERAS_OFFLINE", "1")
    again = vk.from_pretrained("MCG-NJU/videomae-small-finetuned-kinetics")
    assert again.get_config() == model.get_config()
    for restored, original in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(restored, original)
    assert again.registry_entry["top1"] == 79.0
    longer = vk.from_pretrained("MCG-NJU/videomae-small-finetuned-kinetics", num_frames=8)
    assert longer.video_shape == (8, 224, 224, 3)
    # presets by registered name go through the same cache
    backbone = vk.VideoMAEBackbone.from_preset("MCG-NJU/videomae-small-finetuned-kinetics")
    assert type(backbone) is vk.VideoMAEBackbone and backbone.architecture["num_heads"] == 16
    classifier = vk.VideoMAEClassifier.from_preset("MCG-NJU/videomae-small-finetuned-kinetics")
    assert record_parity("logits (from_preset)", classifier(video), expected) <= 1e-5


def test_google_drive_checkpoint_through_the_confirmation_page(server, tmp_path, record_parity):
    """videomae-s-k400-ft-1600e: an official DeepSpeed file ('module') on Google Drive."""
    hf = reference.set_official_epsilons(reference.hf_model("classifier", seed=53, **VIT_S_OFFICIAL))
    path = reference.save_official(reference.official_state_dict(hf), str(tmp_path / "s.pth"), "module")
    drive_id = presets.checkpoint("videomae-s-k400-ft-1600e")["files"][0]["gdrive_id"]
    server.drive[drive_id] = open(path, "rb").read()
    pixels, video = reference.random_video(VIT_S_OFFICIAL, batch=1, seed=54)

    model = vk.from_pretrained("videomae-s-k400-ft-1600e")
    assert model.encoder.num_heads == 6
    assert record_parity("logits", model(video), reference.hf_outputs(hf, pixels)) <= 1e-5
    assert any(r.startswith("/download?") for r in server.requests)
    source = os.path.join(hub.entry_dir("videomae-s-k400-ft-1600e"), "source")
    digest = open(os.path.join(source, "videomae-s-k400-ft-1600e.pth.sha256")).read().strip()
    assert digest == hashlib.sha256(server.drive[drive_id]).hexdigest()


def test_port_command_takes_a_registered_name(server, tmp_path):
    hf = reference.hf_model("classifier", seed=55, **VIT_S_HF)
    hf.save_pretrained(str(tmp_path / "hf"))
    _serve_hf_folder(server, "MCG-NJU/videomae-small-finetuned-kinetics", str(tmp_path / "hf"))
    code = cli.main(["port", "MCG-NJU/videomae-small-finetuned-kinetics", "--out",
                     str(tmp_path / "out"), "--format", "h5", "--quiet"])
    assert code == 0
    assert os.listdir(tmp_path / "out") == ["MCG-NJU--videomae-small-finetuned-kinetics.weights.h5"]


# --- failure modes, on small registered entries ------------------------------------------------

# What these check (downloads, caches, digests, messages) does not depend on the backend.
independent = pytest.mark.backend_independent

@pytest.fixture
def small_entries(monkeypatch, tmp_path):
    """Two small checkpoints registered for the test: one on Google Drive, one on the Hub."""
    data = copy.deepcopy(presets._registry())
    official = reference.set_official_epsilons(
        reference.hf_model("classifier", seed=56, image_size=32, patch_size=8, num_frames=4,
                           hidden_size=384, num_hidden_layers=1, num_attention_heads=6,
                           intermediate_size=64, num_labels=3))
    path = reference.save_official(reference.official_state_dict(official), str(tmp_path / "o.pth"))
    data["checkpoints"]["test-official"] = {
        "layout": "official", "task": "classifier", "architecture": "ViT-S/8",
        "files": [{"url": "https://drive.google.com/uc?export=download&id=TESTID",
                   "gdrive_id": "TESTID", "filename": "test-official.pth", "sha256": None}],
        "model_args": {"num_frames": 4, "image_size": 32}, "dataset": "test",
    }
    hf = reference.hf_model("classifier", seed=57, **reference.SMALL)
    hf.save_pretrained(str(tmp_path / "hf"))
    torch.save(hf.state_dict(), str(tmp_path / "hf" / "pytorch_model.bin"))
    data["checkpoints"]["test/hub"] = {
        "layout": "transformers", "task": "classifier", "architecture": "ViT",
        "files": [
            {"url": "https://huggingface.co/test/hub/resolve/main/config.json",
             "filename": "config.json", "sha256": None},
            {"url": ["https://huggingface.co/test/hub/resolve/main/model.safetensors",
                     "https://huggingface.co/test/hub/resolve/main/pytorch_model.bin"],
             "filename": ["model.safetensors", "pytorch_model.bin"], "sha256": None},
        ],
        "model_args": {}, "dataset": "test",
    }
    monkeypatch.setattr(presets, "_registry", lambda: data)
    return {"official": open(path, "rb").read(), "hf": str(tmp_path / "hf"), "data": data}


def _no_partial_files(folder):
    if not os.path.isdir(folder):
        return True
    return not [n for n in os.listdir(folder) if n.startswith(".") or n.endswith(".tmp")]


@independent
def test_missing_safetensors_falls_back_to_pytorch_model_bin(server, small_entries):
    _serve_hf_folder(server, "test/hub", small_entries["hf"], weights=("pytorch_model.bin",))
    model = vk.from_pretrained("test/hub")
    assert model.load_report.layout == "transformers"
    assert any(r.endswith("model.safetensors") for r in server.requests)


@independent
def test_quota_page_is_an_error_with_a_manual_route(server, small_entries):
    server.drive["TESTID"] = small_entries["official"]
    server.quota.add("TESTID")
    with pytest.raises(hub.DownloadError, match="quota exceeded.*drive.google.com/file/d/TESTID"
                       ) as error:
        vk.from_pretrained("test-official")
    assert f"from {server.url}/uc?" in str(error.value)  # the mirror actually contacted
    assert _no_partial_files(os.path.join(hub.entry_dir("test-official"), "source"))
    assert not os.path.exists(os.path.join(hub.entry_dir("test-official"), "source",
                                           "test-official.pth"))


@independent
def test_a_cut_download_resumes_then_names_the_mirror(server, small_entries):
    """Hub files come through huggingface_hub: a transfer cut short resumes from the bytes
    already written (asked for by range; huggingface_hub writes 10 MB chunks) before the
    download gives up; the error names the address contacted, and the next try works."""
    body = np.random.default_rng(0).bytes(24 << 20)
    small_entries["data"]["checkpoints"]["test/big"] = {
        "layout": "official", "task": "classifier", "architecture": "ViT", "dataset": "test",
        "files": [{"url": "https://huggingface.co/test/big/resolve/main/big.pth",
                   "filename": "big.pth", "sha256": hashlib.sha256(body).hexdigest()}],
    }
    address = "/test/big/resolve/main/big.pth"
    server.files[address] = body
    server.truncate.add(address)
    with pytest.raises(hub.DownloadError) as error:
        hub.fetch("test/big")
    message = str(error.value)
    assert f"Could not download test/big from {server.url}{address}" in message, message
    assert "Run the command again to retry" in message and "\n" not in message
    assert "bytes=10485760-" in [h.get("range") for h in server.gets("big.pth")]
    server.truncate.clear()
    with open(hub.fetch("test/big"), "rb") as f:
        assert f.read() == body


@independent
def test_a_checkpoint_already_in_the_hugging_face_cache_is_not_downloaded_again(
        server, small_entries, monkeypatch):
    """What transformers downloaded (into huggingface_hub's cache) serves from_pretrained,
    offline too; HF_TOKEN goes with the requests."""
    from huggingface_hub import hf_hub_download

    _serve_hf_folder(server, "test/hub", small_entries["hf"])
    for name in ("config.json", "model.safetensors"):  # as transformers' from_pretrained does
        hf_hub_download("test/hub", name, endpoint=server.url,
                        cache_dir=os.environ["HF_HUB_CACHE"])
    before = len(server.gets("model.safetensors"))
    server.stop()
    monkeypatch.setenv("VIDEOMAE_KERAS_OFFLINE", "1")
    model = vk.from_pretrained("test/hub")
    assert model.load_report.layout == "transformers" and before == 1


@independent
def test_hf_token_is_sent_to_the_hub(server, small_entries, monkeypatch):
    _serve_hf_folder(server, "test/hub", small_entries["hf"])
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    vk.from_pretrained("test/hub")
    assert all(h.get("authorization") == "Bearer hf_test_token"
               for h in server.gets("model.safetensors"))


@independent
def test_published_digest_is_checked(server, small_entries):
    server.drive["TESTID"] = small_entries["official"]
    small_entries["data"]["checkpoints"]["test-official"]["files"][0]["sha256"] = "0" * 64
    with pytest.raises(hub.DownloadError, match="sha256 mismatch") as error:
        vk.from_pretrained("test-official")
    assert server.url in str(error.value) and "Nothing was kept" in str(error.value)
    assert _no_partial_files(os.path.join(hub.entry_dir("test-official"), "source"))


@independent
def test_a_changed_cache_file_is_replaced_by_a_fresh_download(server, small_entries, capfd):
    server.drive["TESTID"] = small_entries["official"]
    hub.fetch("test-official")
    path = os.path.join(hub.entry_dir("test-official"), "source", "test-official.pth")
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    capfd.readouterr()
    model = vk.from_pretrained("test-official")
    assert "no longer matches the sha256 recorded" in capfd.readouterr().err
    assert open(path, "rb").read() == small_entries["official"] and model.count_params() > 0
    assert sum(r.startswith("/download?") for r in server.requests) == 2


@independent
def test_a_hub_file_that_changed_in_the_cache_is_removed(server, small_entries):
    _serve_hf_folder(server, "test/hub", small_entries["hf"])
    hub.fetch("test/hub")  # records the digests at the first download
    local = hub._cached("test/hub", small_entries["data"]["checkpoints"]["test/hub"]["files"][1])
    with open(os.path.realpath(local), "r+b") as f:
        f.seek(200)
        f.write(b"\x07\x07")
    with pytest.raises(hub.DownloadError, match="recorded when it was first downloaded") as error:
        hub.fetch("test/hub")
    assert "was removed from the cache" in str(error.value) and not os.path.exists(local)
    assert os.path.isdir(hub.fetch("test/hub"))  # the retry downloads it again


@independent
def test_downloaded_files_that_do_not_convert_are_removed(server, small_entries, tmp_path):
    from safetensors.numpy import save_file

    broken = tmp_path / "broken.safetensors"
    save_file({"something.else": np.ones((2, 2), np.float32)}, str(broken))
    _serve_hf_folder(server, "test/hub", small_entries["hf"])
    server.files["/test/hub/resolve/main/model.safetensors"] = broken.read_bytes()
    with pytest.raises(hub.DownloadError, match="do not convert") as error:
        vk.from_pretrained("test/hub")
    assert f"{server.url}/test/hub/resolve/main/model.safetensors" in str(error.value)
    assert "removed from the cache" in str(error.value)
    spec = small_entries["data"]["checkpoints"]["test/hub"]["files"][1]
    assert hub._cached("test/hub", spec) is None  # not kept to fail again
    _serve_hf_folder(server, "test/hub", small_entries["hf"])
    assert vk.from_pretrained("test/hub").load_report.layout == "transformers"


@independent
def test_offline_without_cache_says_how_to_get_the_file(server, small_entries, monkeypatch):
    monkeypatch.setenv("VIDEOMAE_KERAS_OFFLINE", "1")
    with pytest.raises(hub.DownloadError) as error:
        vk.from_pretrained("test-official")
    message = str(error.value)
    assert "offline" in message and "drive.google.com/file/d/TESTID" in message
    assert os.path.join(hub.entry_dir("test-official"), "source", "test-official.pth") in message
    with pytest.raises(hub.DownloadError) as error:  # every file an entry needs, at once
        vk.from_pretrained("test/hub")
    message = str(error.value)
    assert "missing config.json, model.safetensors or pytorch_model.bin" in message
    assert f"{server.url}/test/hub/resolve/main/config.json" in message
    assert f"{server.url}/test/hub/resolve/main/model.safetensors" in message
    assert server.requests == []


@independent
def test_unreachable_server_is_an_error_with_a_manual_route(small_entries, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOMAE_KERAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.delenv("VIDEOMAE_KERAS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(hub.DownloadError, match="Could not download test/hub from "
                       "http://127.0.0.1:9/test/hub/resolve/main/config.json.*by hand"):
        vk.from_pretrained("test/hub")


@independent
def test_a_file_placed_by_hand_is_used(small_entries, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOMAE_KERAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VIDEOMAE_KERAS_OFFLINE", "1")
    source = os.path.join(hub.entry_dir("test-official"), "source")
    os.makedirs(source)
    with open(os.path.join(source, "test-official.pth"), "wb") as f:
        f.write(small_entries["official"])
    model = vk.from_pretrained("test-official")
    assert model.video_shape == (4, 32, 32, 3)


def test_predict_command_takes_a_registered_name(server, small_entries, tmp_path, capsys):
    """`videomae-keras predict --weights NAME`: downloaded, converted, cached, then used."""
    import json

    from videos import moving_frames, write_video

    _serve_hf_folder(server, "test/hub", small_entries["hf"])
    video = write_video(tmp_path / "clip.mkv", moving_frames(20, 40, 56), "FFV1")
    code = cli.main(["predict", video, "--weights", "test/hub", "--views", "2x1", "--top-k", "3",
                     "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    expected = vk.predict_video(vk.from_pretrained(small_entries["hf"]), video, views=(2, 1),
                                top_k=3)
    assert [t["index"] for t in result["top"]] == [t["index"] for t in expected.top]
    assert all(t["label"] is None for t in result["top"])  # 7 classes: no shipped label map
    assert os.path.exists(hub.converted_path("test/hub"))
