"""Registered checkpoints by name: download once into a cache, convert once, then load offline.

`load(name)` returns the Keras model. The first call downloads the source files (Google
Drive for the official releases, the Hugging Face Hub for transformers and VideoMAE V2
files), checks them, converts them with `from_pretrained` and saves a `.keras` file in the
cache; later calls load that file without the network.

Environment:
    VIDEOMAE_KERAS_CACHE            cache folder (default ~/.cache/videomae_keras)
    VIDEOMAE_KERAS_OFFLINE=1        never use the network (HF_HUB_OFFLINE=1 works too)
    HF_ENDPOINT                     Hugging Face Hub address (default https://huggingface.co)
    VIDEOMAE_KERAS_GDRIVE_ENDPOINT  Google Drive address (default https://drive.google.com)
    HF_TOKEN                        sent to the Hub for gated or private repositories
"""

import hashlib
import html.parser
import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request

from videomae_keras import registry
from videomae_keras.atomic import atomic_output
from videomae_keras.progress import Stages

HF_DEFAULT = "https://huggingface.co"
GDRIVE_DEFAULT = "https://drive.google.com"
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A registered checkpoint could not be fetched; the message says how to get it by hand."""


def cache_dir():
    return os.path.expanduser(
        os.environ.get("VIDEOMAE_KERAS_CACHE", os.path.join("~", ".cache", "videomae_keras"))
    )


def offline():
    flags = (os.environ.get("VIDEOMAE_KERAS_OFFLINE", ""), os.environ.get("HF_HUB_OFFLINE", ""))
    return any(flag.lower() in ("1", "true", "yes", "on") for flag in flags)


def entry_dir(name):
    return os.path.join(cache_dir(), name.replace("/", "--"))


def converted_path(name):
    return os.path.join(entry_dir(name), "model.keras")


def _endpoint(url):
    """Points the registry's public URLs at HF_ENDPOINT / VIDEOMAE_KERAS_GDRIVE_ENDPOINT."""
    for default, variable in ((HF_DEFAULT, "HF_ENDPOINT"), (GDRIVE_DEFAULT, "VIDEOMAE_KERAS_GDRIVE_ENDPOINT")):
        override = os.environ.get(variable)
        if override and url.startswith(default):
            return override.rstrip("/") + url[len(default) :]
    return url


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _manual_hint(name, spec, folder):
    urls = ", ".join(_as_list(spec["url"]))
    names = " or ".join(_as_list(spec["filename"]))
    where = f"https://drive.google.com/file/d/{spec['gdrive_id']}" if spec.get("gdrive_id") else urls
    return (
        f"Download it by hand from {where} and save it as {os.path.join(folder, names)} "
        f"(or port a local copy: videomae-keras port FILE --out DIR)."
    )


# --- the cache ---------------------------------------------------------------------------------

def fetch(name, stages=None):
    """Makes sure the source files of registered checkpoint `name` are in the cache; returns
    the path to hand to `from_pretrained` (a file, or a folder for transformers checkpoints)."""
    info = registry.entry(name)
    folder = os.path.join(entry_dir(name), "source")
    os.makedirs(folder, exist_ok=True)
    stages = stages or Stages(0, enabled=False)
    paths = []
    for spec in info["files"]:
        paths.append(_fetch_file(name, spec, folder, stages))
    if info["layout"] == "transformers":
        return folder
    return paths[0]


def _fetch_file(name, spec, folder, stages):
    candidates = list(zip(_as_list(spec["filename"]), _as_list(spec["url"])))
    for filename, _ in candidates:
        path = os.path.join(folder, filename)
        if os.path.exists(path):
            _check_recorded_digest(path, spec)
            return path
    if offline():
        raise DownloadError(
            f"{name} is not in the cache ({folder}) and downloads are off (offline mode). "
            + _manual_hint(name, spec, folder)
        )
    errors = []
    for filename, url in candidates:
        path = os.path.join(folder, filename)
        try:
            download(_endpoint(url), path, spec.get("sha256"), stages)
            return path
        except _NotFound as e:  # try the next candidate (e.g. pytorch_model.bin)
            errors.append(str(e))
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(
                f"Could not download {name} from {url}: {e}. " + _manual_hint(name, spec, folder)
            ) from None
    raise DownloadError(
        f"None of {name}'s files could be found ({'; '.join(errors)}). "
        + _manual_hint(name, spec, folder)
    )


def _digest(path):
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            sha.update(block)
    return sha.hexdigest()


def _record_path(path):
    return path + ".sha256"


def _check_recorded_digest(path, spec):
    """A cached file must still match the digest published (or recorded at download)."""
    expected = spec.get("sha256")
    if expected is None and os.path.exists(_record_path(path)):
        with open(_record_path(path), encoding="utf-8") as f:
            expected = f.read().strip()
    if expected and _digest(path) != expected:
        raise DownloadError(
            f"The cached file {path} has changed since it was downloaded (sha256 mismatch). "
            "Delete it to download it again."
        )


# --- downloading -------------------------------------------------------------------------------

class _NotFound(Exception):
    pass


class _FormParser(html.parser.HTMLParser):
    """Finds Google Drive's 'download anyway' form: its action and hidden fields."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.fields = {}
        self._in_form = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("id") == "download-form":
            self.action = attrs.get("action")
            self._in_form = True
        elif tag == "input" and self._in_form and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value", "")

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False


def _open(url):
    headers = {"User-Agent": "videomae-keras"}
    token = os.environ.get("HF_TOKEN")
    host = urllib.parse.urlparse(url).netloc
    hub_host = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", HF_DEFAULT)).netloc
    if token and host == hub_host:
        headers["Authorization"] = f"Bearer {token}"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise _NotFound(f"{url}: 404 not found") from None
        if e.code in (401, 403):
            raise urllib.error.URLError(
                f"HTTP {e.code}: access denied (a gated repository needs HF_TOKEN set to a "
                "token that accepted its terms)"
            ) from None
        raise urllib.error.URLError(f"HTTP {e.code} {e.reason}") from None


def _follow_google_drive_form(response, url):
    """Large Google Drive files first answer with an HTML page asking to confirm; its form
    leads to the file itself."""
    page = response.read(2 * CHUNK).decode("utf-8", "replace")
    parser = _FormParser()
    parser.feed(page)
    if not parser.action:
        reason = "quota exceeded or access denied" if "quota" in page.lower() else "no file in the answer"
        raise urllib.error.URLError(f"Google Drive answered with a web page ({reason})")
    target = parser.action + "?" + urllib.parse.urlencode(parser.fields)
    return _open(urllib.parse.urljoin(url, target))


def download(url, path, sha256=None, stages=None):
    """Downloads `url` to `path` atomically: a temporary file, checked, then renamed."""
    stages = stages or Stages(0, enabled=False)
    response = _open(url)
    if "text/html" in response.headers.get("Content-Type", ""):
        response = _follow_google_drive_form(response, url)
        if "text/html" in response.headers.get("Content-Type", ""):
            raise urllib.error.URLError("the confirmed Google Drive download is still a web page")
    total = int(response.headers.get("Content-Length") or 0) or None
    sha = hashlib.sha256()
    with atomic_output(path, overwrite=True) as temp:
        with open(temp, "wb") as f, stages.bar(total, os.path.basename(path), "B", True) as bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                f.write(block)
                sha.update(block)
                bar.update(len(block))
        if total is not None and os.path.getsize(temp) != total:
            raise urllib.error.URLError(
                f"the download stopped early ({os.path.getsize(temp)} of {total} bytes)"
            )
        digest = sha.hexdigest()
        if sha256 and digest != sha256:
            raise urllib.error.URLError(f"sha256 mismatch: expected {sha256}, got {digest}")
        _check_content(temp, path)
    with open(_record_path(path), "w", encoding="utf-8") as f:
        f.write(digest + "\n")
    return path


def _check_content(temp, path):
    """The file must look like what its name says: a checkpoint or a JSON config."""
    with open(temp, "rb") as f:
        head = f.read(16)
    name = os.path.basename(path)
    if name.endswith(".json"):
        try:
            with open(temp, encoding="utf-8") as f:
                json.load(f)
            return
        except ValueError:
            pass
    elif name.endswith(".safetensors"):
        if len(head) >= 9 and head[8:9] == b"{":
            return
    elif head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch zip / legacy pickle
        return
    raise urllib.error.URLError(
        f"the downloaded data is not a valid {name} (it starts with {head[:12]!r}; a web page "
        "instead of the file?)"
    )


# --- converting and loading ---------------------------------------------------------------------

def load(name, progress=True, **overrides):
    """The Keras model of registered checkpoint `name`, downloading and converting on first use.

    Keyword overrides (num_frames, image_size, drop_path_rate, ...) rebuild the model with
    those arguments around the cached weights.
    """
    from videomae_keras.convert.loading import from_pretrained, load_keras_model, rebuild

    info = registry.entry(name)
    path = converted_path(name)
    if not os.path.exists(path):
        stages = Stages(2, enabled=progress)
        source = stages.run(f"fetch {name}", fetch, name, stages)
        model = stages.run(
            f"convert {name}", from_pretrained, source, **info.get("model_args", {})
        )
        with atomic_output(path, overwrite=True, suffix=".keras") as temp:
            model.save(temp)
    else:
        try:
            model = load_keras_model(path)
        except Exception as e:
            raise RuntimeError(
                f"The converted model of {name} in the cache ({path}) cannot be loaded ({e}). "
                f"Delete it (videomae_keras.hub.remove({name!r})) and it is converted again."
            ) from None
    if overrides:
        model = rebuild(model, **overrides)
    model.registry_entry = info
    return model


def remove(name):
    """Deletes a registered checkpoint's cached files."""
    shutil.rmtree(entry_dir(name), ignore_errors=True)
