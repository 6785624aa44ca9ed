"""Reading PyTorch-side checkpoints into flat {name: numpy array} dicts.

Handles official `.pth` files (weights under 'model', 'module' or at the top level; DDP,
torch.compile and backbone prefixes), transformers folders (config.json + model.safetensors,
sharded safetensors or pytorch_model.bin) and single .safetensors / .bin files. Pickles are
read with `torch.load(weights_only=True)`, so a file that tries to run code is refused;
safetensors files need no torch at all (unless they hold bfloat16, which numpy lacks).

Both are read lazily (`convert.tensors`): reading a checkpoint costs its header, and each
tensor's data is read when loading assigns it (safetensors by a plain read at its offsets,
a `.pth` through a memory map whose pages are handed back after each tensor).
"""

import dataclasses
import json
import os
import re
import zipfile

import numpy as np

from videomae_keras.convert.tensors import LazyTensor, materialize
from videomae_keras.memory import release_pages

# Wrapper keys official training scripts save under, in the order they are tried.
WRAPPER_KEYS = ("model", "module", "state_dict")
# Prefixes added by DistributedDataParallel, torch.compile and some fine-tuning codebases.
STRIP_PREFIXES = ("module.", "_orig_mod.", "backbone.")

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")
HF_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or understood; the message says why and what to do."""


@dataclasses.dataclass
class Checkpoint:
    """Tensors of a checkpoint (float32 numpy arrays, or `LazyTensor`s that read as such),
    plus the transformers config if any."""

    state: dict
    path: str
    hf_config: dict = None


def read_checkpoint(source, lazy=False):
    """Reads a checkpoint file or transformers folder into a `Checkpoint`.

    With `lazy=True` the state holds `LazyTensor`s (shapes from the headers, data read on
    `load()`), which is how `from_pretrained` loads at the cost of the weights alone;
    otherwise every tensor is read into a float32 numpy array.
    """
    checkpoint = _read_lazily(source)
    if not lazy:
        checkpoint.state = materialize(checkpoint.state)
    return checkpoint


def _read_lazily(source):
    path = os.fspath(source)
    if not os.path.exists(path):
        raise CheckpointError(
            f"Checkpoint not found: {path}.{_registry_hint(path)} Give an official .pth file, a "
            "transformers folder (config.json + model.safetensors or pytorch_model.bin), a "
            ".safetensors/.bin file, or a registered name (videomae-keras port --list)."
        )
    if os.path.isdir(path):
        return _read_hf_folder(path)
    hf_config = None
    sibling_config = os.path.join(os.path.dirname(path), "config.json")
    if os.path.basename(path) in HF_WEIGHT_FILES and os.path.exists(sibling_config):
        hf_config = _read_json(sibling_config)
    return Checkpoint(_read_weights_file(path), path, hf_config)


def _registry_hint(path):
    """' Did you mean ...?' for a missing path that looks like a mistyped registered name."""
    import difflib

    from videomae_keras import presets

    close = difflib.get_close_matches(path, presets.names(), n=3, cutoff=0.75)
    return f" Did you mean {', '.join(close)}?" if close else ""


def _read_hf_folder(folder):
    config_path = os.path.join(folder, "config.json")
    for name in HF_WEIGHT_FILES:
        weights = os.path.join(folder, name)
        if os.path.exists(weights):
            break
    else:
        raise CheckpointError(
            f"{folder} is a folder without transformers weights: expected one of "
            f"{', '.join(HF_WEIGHT_FILES)}."
        )
    hf_config = _read_json(config_path) if os.path.exists(config_path) else None
    if weights.endswith(".index.json"):
        index = _read_json(weights)
        files = sorted(set(index.get("weight_map", {}).values()))
        if not files:
            raise CheckpointError(f"{weights} lists no weight files.")
        state = {}
        for name in files:
            state.update(_read_weights_file(os.path.join(folder, name)))
        return Checkpoint(state, folder, hf_config)
    return Checkpoint(_read_weights_file(weights), folder, hf_config)


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"Cannot read {path}: {e}") from None


def _read_weights_file(path):
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise CheckpointError(
            f"{path} is empty (0 bytes), not a checkpoint: download or copy it again."
        )
    if path.endswith(".safetensors"):
        return _read_safetensors(path)
    if path.endswith(TORCH_SUFFIXES):
        return _read_torch(path)
    raise CheckpointError(
        f"Unknown checkpoint file type: {path}. Expected .pth/.pt/.bin (PyTorch) or "
        ".safetensors."
    )


# safetensors dtype names as numpy spells them; the rest (bfloat16, float8) go through torch
SAFETENSORS_NUMPY = {"F64": "float64", "F32": "float32", "F16": "float16", "I64": "int64",
                     "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
                     "BOOL": "bool"}
SAFETENSORS_NAMES = {**SAFETENSORS_NUMPY, "BF16": "bfloat16"}


def _read_safetensors(path):
    """{key: LazyTensor} from a safetensors header (checked by safetensors on opening)."""
    safe_open = _safe_open(path)
    try:
        with safe_open(path, framework="numpy") as f:
            keys = list(f.keys())
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"Cannot read {path} as safetensors: {e}") from None
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(length))
    return {key: LazyTensor(header[key]["shape"],
                            SAFETENSORS_NAMES.get(header[key]["dtype"],
                                                  header[key]["dtype"].lower()),
                            _safetensors_reader(path, key, header[key], 8 + length))
            for key in keys}


def _safe_open(path):
    try:
        from safetensors import safe_open
    except ImportError:
        raise CheckpointError(
            f"Reading {path} needs the safetensors package: pip install safetensors"
        ) from None
    return safe_open


def _safetensors_reader(path, key, entry, data_start):
    """Reads one tensor with a plain file read at its offsets (what safetensors validated):
    no memory map, so no mapped pages stay in the process' memory, and several times
    faster than faulting the pages in. dtypes numpy lacks (bfloat16) go through torch."""
    dtype, shape = entry["dtype"], tuple(entry["shape"])

    def read():
        if dtype not in SAFETENSORS_NUMPY:
            return _read_through_torch(path, key, dtype)
        begin, end = entry["data_offsets"]
        numpy_dtype = np.dtype(SAFETENSORS_NUMPY[dtype]).newbyteorder("<")
        count = (end - begin) // numpy_dtype.itemsize
        with open(path, "rb") as f:
            f.seek(data_start + begin)
            array = np.fromfile(f, numpy_dtype, count)
        if array.size != count:
            raise CheckpointError(f"{path} ends inside tensor {key}: the file is truncated; "
                                  "download or copy it again.")
        return _to_float32(array.reshape(shape))

    return read


def _read_through_torch(path, key, dtype):
    try:
        import torch  # noqa: F401
    except ImportError:
        raise CheckpointError(
            f"{path} holds {dtype} tensors, which numpy cannot read: install torch "
            "(pip install torch) to read them."
        ) from None
    with _safe_open(path)(path, framework="pt") as f:  # closing unmaps what it touched
        return _torch_to_numpy(f.get_tensor(key))


def _read_torch(path):
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"Reading the PyTorch file {path} needs torch (pip install torch); safetensors "
            "files can be read without it."
        ) from None
    try:
        obj, mapped = _torch_load(torch, path)
    except Exception as e:
        message = str(e)
        blocked = re.search(r"(?i)unsupported global:?\s+(?:GLOBAL\s+)?([\w.]+)", message)
        if blocked:
            name = blocked.group(1)
            raise CheckpointError(
                f"Refusing to load {path}: it is a pickle that would import and call "
                f"{name} on loading, which torch.load(weights_only=True) does not allow, "
                "since such a file can run code. If you trust the file, re-save just its "
                "tensors in a trusted environment, e.g. torch.save(torch.load(path, "
                "weights_only=False)['model'], 'clean.pth'), or convert it to safetensors."
            ) from None
        detail = message.strip().splitlines()[0][:200] if message.strip() else "no message"
        raise CheckpointError(
            f"Cannot read {path} as a PyTorch checkpoint: the file is corrupt, truncated or not "
            f"a torch.save file ({type(e).__name__}: {detail})."
        ) from None
    return _flatten_torch_object(obj, path, mapped)


def _torch_load(torch, path):
    """(object, memory-mapped?): the file mapped where its format allows (torch.save's zip
    format, the default since torch 1.6), else read whole (the legacy format)."""
    mapped = zipfile.is_zipfile(path)
    with torch.serialization.safe_globals(_harmless_globals()):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mapped), mapped


def _harmless_globals():
    """Plain data types official training checkpoints pickle beside the weights.

    `utils.save_model` stores the run's argparse.Namespace under 'args' and numpy scalars
    (epochs, losses); none of these can run code, unlike arbitrary pickled callables.
    """
    import argparse

    allowed = [argparse.Namespace, np.dtype]
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import scalar
    allowed.append(scalar)
    allowed.extend(type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32"))
    return allowed


def _flatten_torch_object(obj, path, mapped=False):
    import torch

    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state dict of tensors."
        )
    state = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            state[key] = LazyTensor(tuple(value.shape), str(value.dtype).removeprefix("torch."),
                                    _torch_reader(value, mapped))
    if not state:
        raise CheckpointError(
            f"{path} holds no tensors at its top level or under {', '.join(WRAPPER_KEYS)}; "
            f"its keys are {sorted(obj)[:10]}."
        )
    return state


def _torch_reader(tensor, mapped):
    """Copies one tensor out (float32); for a mapped file, then hands its pages back."""

    def read():
        array = _torch_to_numpy(tensor)
        if mapped:
            storage = tensor.untyped_storage()
            release_pages(storage.data_ptr(), storage.nbytes())
        return array

    return read


def _torch_to_numpy(tensor):
    """A float32 (or bool) numpy copy that shares no memory with `tensor`."""
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype in (torch.bool, torch.float32):
        return tensor.numpy().copy()
    return tensor.to(torch.float32).numpy()


def _to_float32(array):
    array = np.asarray(array)
    if array.dtype.kind == "f" and array.dtype != np.float32:
        return array.astype(np.float32)
    return array


def strip_prefixes(state):
    """Removes DDP, torch.compile and backbone prefixes (any order, repeated) from every key."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in STRIP_PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix) :]
                    changed = True
        out[key] = value
    return out
