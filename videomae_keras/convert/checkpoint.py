"""Reading PyTorch-side checkpoints into flat {name: numpy array} dicts.

Handles official `.pth` files (weights under 'model', 'module' or at the top level; DDP,
torch.compile and backbone prefixes), transformers folders (config.json + model.safetensors,
sharded safetensors or pytorch_model.bin) and single .safetensors / .bin files. Pickles are
read with `torch.load(weights_only=True)`, so a file that tries to run code is refused;
safetensors files need no torch at all.
"""

import dataclasses
import json
import os
import re

import numpy as np

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
    """Tensors of a checkpoint as float32 numpy arrays, plus the transformers config if any."""

    state: dict
    path: str
    hf_config: dict = None


def read_checkpoint(source):
    """Reads a checkpoint file or transformers folder into a `Checkpoint`."""
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


def _read_safetensors(path):
    try:
        from safetensors import safe_open
    except ImportError:
        raise CheckpointError(
            f"Reading {path} needs the safetensors package: pip install safetensors"
        ) from None
    state = {}
    try:
        with safe_open(path, framework="numpy") as f:
            for key in f.keys():
                state[key] = _to_float32(f.get_tensor(key))
    except (TypeError, ValueError) as e:
        if "bf16" not in str(e).lower() and "bfloat16" not in str(e).lower():
            raise CheckpointError(f"Cannot read {path} as safetensors: {e}") from None
        # numpy has no bfloat16: read those files through torch.
        with safe_open(path, framework="pt") as f:
            state = {key: _torch_to_numpy(f.get_tensor(key)) for key in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"Cannot read {path} as safetensors: {e}") from None
    return state


def _read_torch(path):
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"Reading the PyTorch file {path} needs torch (pip install torch); safetensors "
            "files can be read without it."
        ) from None
    try:
        with torch.serialization.safe_globals(_harmless_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
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
    return _flatten_torch_object(obj, path)


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


def _flatten_torch_object(obj, path):
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
            state[key] = _torch_to_numpy(value)
    if not state:
        raise CheckpointError(
            f"{path} holds no tensors at its top level or under {', '.join(WRAPPER_KEYS)}; "
            f"its keys are {sorted(obj)[:10]}."
        )
    return state


def _torch_to_numpy(tensor):
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bool:
        return tensor.numpy()
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
