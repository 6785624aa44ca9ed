"""The download cache of registered checkpoints: fetch once, check, keep, then work offline.

`fetched(name)` gives the checked source files; `converted_path(name)` is where loading
(`convert.loading.load_registered`, what `from_pretrained(name)` calls) keeps the converted
`.keras` file, so later loads need no network.

- Files on the Hugging Face Hub (transformers checkpoints, VideoMAE V2 releases) come
  through `huggingface_hub`: its cache (shared with transformers, so a checkpoint it already
  downloaded is not downloaded again), `HF_ENDPOINT`, `HF_TOKEN`, offline mode and resumable
  downloads.
- The official VideoMAE releases on Google Drive are downloaded here (through the "download
  anyway" page for large files) into this package's cache.

No release publishes a sha256. The first download of each file records one (beside it for
Google Drive files, in the entry's `digests.json` for Hub files), and every later use checks
the cached file against it; a file that fails its check, or downloaded files that do not
convert, are removed, so a retry downloads them again. Errors name the address contacted.

Environment:
    VIDEOMAE_KERAS_CACHE            this package's cache (default ~/.cache/videomae_keras)
    VIDEOMAE_KERAS_OFFLINE=1        never use the network (HF_HUB_OFFLINE=1 works too)
    HF_ENDPOINT                     Hugging Face Hub address (default https://huggingface.co)
    HF_HUB_CACHE, HF_HOME           huggingface_hub's cache
    HF_TOKEN                        sent to the Hub for gated or private repositories
    VIDEOMAE_KERAS_GDRIVE_ENDPOINT  Google Drive address (default https://drive.google.com)
"""

import contextlib
import hashlib
import html.parser
import json
import os
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request

from videomae_keras import presets
from videomae_keras.atomic import atomic_output, file_sha256
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


def _say(message):
    print(f"videomae-keras: {message}", file=sys.stderr, flush=True)


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _candidates(spec):
    """[(filename, url)] a file of an entry may be fetched as, in order."""
    return list(zip(_as_list(spec["filename"]), _as_list(spec["url"])))


# --- where each file comes from ------------------------------------------------------------

def hub_endpoint():
    """The Hugging Face Hub address in use (HF_ENDPOINT, read now)."""
    return os.environ.get("HF_ENDPOINT", HF_DEFAULT).rstrip("/")


def _endpoint(url):
    """A Google Drive URL of the registry pointed at VIDEOMAE_KERAS_GDRIVE_ENDPOINT."""
    override = os.environ.get("VIDEOMAE_KERAS_GDRIVE_ENDPOINT")
    if override and url.startswith(GDRIVE_DEFAULT):
        return override.rstrip("/") + url[len(GDRIVE_DEFAULT):]
    return url


def _on_hub(url):
    return url.startswith(HF_DEFAULT + "/")


def _hub_parts(url):
    """(repo id, revision, path in the repo) of a huggingface.co/REPO/resolve/REV/PATH URL."""
    owner, repo, resolve, revision, path = url[len(HF_DEFAULT) + 1:].split("/", 4)
    if resolve != "resolve":
        raise ValueError(f"Not a Hub file address: {url}")
    return f"{owner}/{repo}", revision, path


def _hub_address(url):
    repo, revision, path = _hub_parts(url)
    return f"{hub_endpoint()}/{repo}/resolve/{revision}/{path}"


def _hf_cache_dir():
    """huggingface_hub's cache folder from the environment as it is now (its own constants
    are read once, when it is imported), or None for its default."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


def _address(url):
    """The address a registry URL is actually fetched from (mirrors applied)."""
    return _hub_address(url) if _on_hub(url) else _endpoint(url)


def _manual_hint(name, info, missing=None):
    """How to get an entry's files by hand: every file it still needs, at once (all of them
    when none is missing)."""
    specs = missing or [s for s in info["files"] if _cached(name, s) is None] or info["files"]
    if all(_on_hub(_as_list(spec["url"])[0]) for spec in specs):
        addresses = ", ".join(_address(_as_list(spec["url"])[0]) for spec in specs)
        target = ("into one folder, then port the folder: videomae-keras port FOLDER --out "
                  "DIR (or from_pretrained(FOLDER))" if info["layout"] == "transformers" else
                  "and port the file: videomae-keras port FILE --out DIR")
        return f"Download {addresses} by hand {target}."
    folder = os.path.join(entry_dir(name), "source")
    parts = []
    for spec in specs:
        where = (f"https://drive.google.com/file/d/{spec['gdrive_id']}"
                 if spec.get("gdrive_id") else _address(_as_list(spec["url"])[0]))
        parts.append(f"{where} as {os.path.join(folder, ' or '.join(_as_list(spec['filename'])))}")
    return (f"Download it by hand: {'; '.join(parts)} (or port a local copy: videomae-keras "
            "port FILE --out DIR).")


# --- fetching ---------------------------------------------------------------------------------

def fetch(name, stages=None):
    """Makes sure the source files of registered checkpoint `name` are cached; returns the
    path to hand to `from_pretrained` (a file, or a folder for transformers checkpoints)."""
    path, _ = _fetch(name, stages)
    return path


@contextlib.contextmanager
def fetched(name, stages=None):
    """`fetch(name)` for a block that converts the files: if it fails, the files this call
    downloaded are removed (a retry downloads them again) and the error says so."""
    path, downloaded = _fetch(name, stages)
    try:
        yield path
    except Exception as e:
        if not downloaded:
            raise
        for item in downloaded:
            item.remove()
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DownloadError(
            f"The files of {name} downloaded from {', '.join(i.address for i in downloaded)} "
            f"do not convert ({text}); they were removed from the cache, so running the "
            "command again downloads them again."
        ) from e


class _Downloaded:
    """A file this call downloaded, and how to take it out of its cache again (with the
    digest recorded for it)."""

    def __init__(self, path, address, name=None):
        self.path, self.address, self.name = path, address, name  # name: a Hub file's entry

    def remove(self):
        if self.name is not None:  # huggingface_hub's layout: a snapshot link to a blob
            blob = os.path.realpath(self.path)
            for item in (self.path, blob):
                with contextlib.suppress(OSError):
                    os.unlink(item)
            records = _read_digests(self.name)
            if records.pop(_hub_key(self.path), None) is not None:
                _write_digests(self.name, records)
        else:
            for item in (self.path, _record_path(self.path)):
                with contextlib.suppress(OSError):
                    os.unlink(item)


def _fetch(name, stages=None):
    info = presets.checkpoint(name)
    stages = stages or Stages(0, enabled=False)
    if offline():
        missing = [spec for spec in info["files"] if _cached(name, spec) is None]
        if missing:
            listed = ", ".join(" or ".join(_as_list(s["filename"])) for s in missing)
            raise DownloadError(
                f"{name} is not in the cache (missing {listed}) and downloads are off "
                "(offline mode). " + _manual_hint(name, info, missing)
            )
    paths, downloaded = [], []
    for spec in info["files"]:
        path, fresh = (_fetch_hub_file if _on_hub(_as_list(spec["url"])[0])
                       else _fetch_drive_file)(name, info, spec, stages)
        paths.append(path)
        if fresh is not None:
            downloaded.append(fresh)
    if info["layout"] == "transformers":
        return os.path.dirname(paths[0]), downloaded
    return paths[0], downloaded


def _cached(name, spec):
    """The cached path of one file of an entry, or None (no network)."""
    for filename, url in _candidates(spec):
        if _on_hub(url):
            from huggingface_hub import try_to_load_from_cache

            repo, revision, path = _hub_parts(url)
            found = try_to_load_from_cache(repo, path, cache_dir=_hf_cache_dir(),
                                           revision=revision)
            if isinstance(found, str):
                return found
        else:
            path = os.path.join(entry_dir(name), "source", filename)
            if os.path.exists(path):
                return path
    return None


# --- the Hugging Face Hub, through huggingface_hub ---------------------------------------------

def _fetch_hub_file(name, info, spec, stages):
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    not_found = []
    for _, url in _candidates(spec):
        repo, revision, path = _hub_parts(url)
        address = _hub_address(url)
        cached = isinstance(try_to_load_from_cache(repo, path, cache_dir=_hf_cache_dir(),
                                                   revision=revision), str)
        try:
            local = hf_hub_download(
                repo, path, revision=revision, cache_dir=_hf_cache_dir(),
                endpoint=hub_endpoint(), token=os.environ.get("HF_TOKEN") or None,
                local_files_only=offline(), tqdm_class=None if stages.enabled else _NoBar,
                library_name="videomae-keras",
            )
        except LocalEntryNotFoundError as e:
            if offline():
                raise DownloadError(
                    f"{name}: {address} is not in huggingface_hub's cache and downloads are off "
                    "(offline mode). " + _manual_hint(name, info)
                ) from None
            reason = _short(e.__cause__ or e.__context__ or e)
            raise DownloadError(
                f"Could not download {name} from {address}: {reason}. Run the command again "
                "to retry; check HF_ENDPOINT if that address is wrong. "
                + _manual_hint(name, info)
            ) from None
        except (GatedRepoError, RepositoryNotFoundError) as e:
            raise DownloadError(
                f"Could not download {name} from {address}: access denied or no such "
                f"repository ({_short(e)}); a gated repository needs HF_TOKEN set to a token "
                "that accepted its terms. " + _manual_hint(name, info)
            ) from None
        except EntryNotFoundError:
            not_found.append(address)
            continue  # the next candidate, e.g. pytorch_model.bin
        except Exception as e:  # connection errors, HTTP errors, a download cut short
            raise DownloadError(
                f"Could not download {name} from {address}: {_short(e)}. Run the command "
                "again to retry; check HF_ENDPOINT if that address is wrong. "
                + _manual_hint(name, info)
            ) from None
        fresh = None if cached else _Downloaded(local, address, name)
        _check_hub_digest(name, spec, local, address, fresh)
        return local, fresh
    raise DownloadError(
        f"None of {name}'s files could be found ({'; '.join(a + ': not found' for a in not_found)}"
        f"). " + _manual_hint(name, info)
    )


def _short(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


try:
    from tqdm.auto import tqdm as _tqdm

    class _NoBar(_tqdm):
        """huggingface_hub's progress bar, silenced (progress=False)."""

        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
except ImportError:  # pragma: no cover  (tqdm is a dependency)
    _NoBar = None


def _digests_path(name):
    return os.path.join(entry_dir(name), "digests.json")


def _hub_key(local):
    """A Hub file's key among recorded digests: its place in huggingface_hub's cache
    (models--OWNER--NAME/snapshots/COMMIT/PATH), one per revision."""
    parts = os.path.normpath(local).split(os.sep)
    for i, part in enumerate(parts):
        if part.startswith("models--"):
            return "/".join(parts[i:])
    return local


def _check_hub_digest(name, spec, local, address, fresh):
    """A Hub file must match the published sha256, else the one recorded at its first
    download (recorded now if this is it); a file that does not is removed."""
    records = _read_digests(name)
    key = _hub_key(local)
    expected = spec.get("sha256") or records.get(key)
    digest = file_sha256(local)
    if expected and digest != expected:
        _Downloaded(local, address, name).remove()
        where = "published" if spec.get("sha256") else "recorded when it was first downloaded"
        raise DownloadError(
            f"{local} (from {address}) does not match the sha256 {where} (expected "
            f"{expected}, got {digest}); it was removed from the cache, so running the command "
            "again downloads it again."
        )
    if not expected:
        records[key] = digest
        _write_digests(name, records)


def _read_digests(name):
    with contextlib.suppress(OSError, ValueError):
        with open(_digests_path(name), encoding="utf-8") as f:
            return dict(json.load(f))
    return {}


def _write_digests(name, records):
    os.makedirs(entry_dir(name), exist_ok=True)
    with atomic_output(_digests_path(name), overwrite=True, suffix=".json") as temp:
        with open(temp, "w", encoding="utf-8") as f:
            json.dump(records, f, indent=2)


# --- Google Drive, downloaded here -------------------------------------------------------------

def _fetch_drive_file(name, info, spec, stages):
    folder = os.path.join(entry_dir(name), "source")
    os.makedirs(folder, exist_ok=True)
    candidates = _candidates(spec)
    for filename, _ in candidates:
        path = os.path.join(folder, filename)
        if os.path.exists(path):
            if _cached_file_is_intact(path, spec):
                return path, None
            if offline():
                raise DownloadError(
                    f"The cached {path} no longer matches the sha256 recorded when it was "
                    "downloaded, and was removed; downloads are off (offline mode). "
                    + _manual_hint(name, info)
                )
            _say(f"the cached {path} no longer matches the sha256 recorded when it was "
                 "downloaded; it was removed and is downloaded again")
            break
    not_found = []
    for filename, url in candidates:
        path = os.path.join(folder, filename)
        address = _endpoint(url)
        try:
            download(address, path, spec.get("sha256"), stages)
            return path, _Downloaded(path, address)
        except _NotFound as e:  # try the next candidate
            not_found.append(str(e))
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise DownloadError(
                f"Could not download {name} from {address}: {reason}. Nothing was kept; run "
                "the command again to retry (VIDEOMAE_KERAS_GDRIVE_ENDPOINT sets the address). "
                + _manual_hint(name, info)
            ) from None
    raise DownloadError(
        f"None of {name}'s files could be found ({'; '.join(not_found)}). "
        + _manual_hint(name, info)
    )


def _record_path(path):
    return path + ".sha256"


def _cached_file_is_intact(path, spec):
    """A cached file must still match the digest published (or recorded at download); one
    that does not is removed. A file placed by hand (no record) is taken as it is, and its
    digest recorded now."""
    expected = spec.get("sha256")
    if expected is None and os.path.exists(_record_path(path)):
        with open(_record_path(path), encoding="utf-8") as f:
            expected = f.read().strip()
    digest = file_sha256(path)
    if expected and digest != expected:
        for item in (path, _record_path(path)):
            with contextlib.suppress(OSError):
                os.unlink(item)
        return False
    if not expected:
        _write_record(path, digest)
    return True


def _write_record(path, digest):
    with atomic_output(_record_path(path), overwrite=True, suffix=".sha256") as temp:
        with open(temp, "w", encoding="utf-8") as f:
            f.write(digest + "\n")


def recorded_digest(name):
    """How an entry's files are checked: "published", "recorded" (a digest was recorded at
    the first download, in this cache) or "on first download" (not downloaded here yet)."""
    info = presets.checkpoint(name)
    if all(spec.get("sha256") for spec in info["files"]):
        return "published"
    drive = [os.path.join(entry_dir(name), "source", f) + ".sha256"
             for spec in info["files"] for f in _as_list(spec["filename"])]
    if os.path.exists(_digests_path(name)) or any(os.path.exists(p) for p in drive):
        return "recorded"
    return "on first download"


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
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise _NotFound(f"{url}: 404 not found") from None
        if e.code in (401, 403):
            raise urllib.error.URLError(f"HTTP {e.code}: access denied") from None
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
    """Downloads `url` to `path` atomically: a temporary file, checked, then renamed; the
    sha256 is recorded beside it. A download that fails a check leaves nothing."""
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
    _write_record(path, digest)
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


def remove(name):
    """Deletes a registered checkpoint's cached files (this package's cache only)."""
    shutil.rmtree(entry_dir(name), ignore_errors=True)
