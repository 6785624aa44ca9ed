"""Preset folders in keras-hub's layout, and `from_preset` for folders and registered names.

A preset folder holds the backbone as `config.json` + `model.weights.h5` and, for a task
model, the whole task as `task.json` + `task.weights.h5`; `metadata.json` says what wrote it.
So `VideoMAEBackbone.from_preset(classifier_folder)` gives the classifier's backbone, and
`VideoMAEClassifier.from_preset(pretrainer_folder, num_classes=174)` a new classifier over
the pretrained backbone. Folders load offline, in Keras' safe mode (no code in them runs).
"""

import datetime
import json
import os

import keras

from videomae_keras.atomic import atomic_output, check_writable
from videomae_keras.initializers import build_for_loading

BACKBONE_CONFIG, BACKBONE_WEIGHTS = "config.json", "model.weights.h5"
TASK_CONFIG, TASK_WEIGHTS = "task.json", "task.weights.h5"
METADATA = "metadata.json"


def save_to_preset(model, preset_dir, overwrite=False):
    """Writes `model` (a backbone or a task) as a preset folder; returns the folder. The folder
    appears whole or not at all; an existing one is replaced only with `overwrite=True`."""
    from videomae_keras import __version__
    from videomae_keras.models.base import VideoMAETask

    preset_dir = os.fspath(preset_dir)
    with atomic_output(preset_dir, overwrite=overwrite, directory=True) as temp:
        os.makedirs(temp)
        backbone = model.backbone if isinstance(model, VideoMAETask) else model
        _write_json(os.path.join(temp, BACKBONE_CONFIG), keras.saving.serialize_keras_object(
            backbone))
        backbone.save_weights(os.path.join(temp, BACKBONE_WEIGHTS))
        if backbone is not model:
            _write_json(os.path.join(temp, TASK_CONFIG),
                        keras.saving.serialize_keras_object(model))
            model.save_weights(os.path.join(temp, TASK_WEIGHTS))
        _write_json(os.path.join(temp, METADATA), {
            "keras_version": keras.__version__,
            "videomae_keras_version": __version__,
            "parameter_count": int(model.count_params()),
            "class_name": type(model).__name__,
            "date_saved": datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%d@%H:%M:%S"),
        })
    return preset_dir


def load_preset(cls, preset, **kwargs):
    """A `cls` model (backbone or task class) from a preset folder or a registered name.

    A task class over a folder or name that holds another kind of model builds a new task of
    that class over its backbone, with `kwargs` (e.g. num_classes) as the task's arguments.
    Keyword arguments are otherwise not allowed for folders, since the folder fixes them.
    """
    from videomae_keras import presets
    from videomae_keras.models.backbone import VideoMAEBackbone

    preset = os.fspath(preset)
    if os.path.isdir(preset):
        model = _load_folder(cls, preset, kwargs)
        if model is not None:
            return model
        backbone = _load_folder(VideoMAEBackbone, preset, {})
    elif presets.is_registered(preset):
        from videomae_keras.convert.loading import load_registered

        source = load_registered(preset)
        if isinstance(source, cls) and not kwargs:
            return source
        backbone = source if isinstance(source, VideoMAEBackbone) else source.backbone
    else:
        raise ValueError(
            f"{preset!r} is neither a preset folder nor a registered name; give a folder "
            "written by save_to_preset, or one of `videomae-keras port --list`."
        )
    if cls is VideoMAEBackbone:
        if kwargs:
            raise ValueError(f"from_preset({preset!r}) gives a backbone as it was saved; "
                             f"{', '.join(sorted(kwargs))} do not apply.")
        return backbone
    return cls(backbone, **kwargs)


def saved_class(folder):
    """The class name of the model a preset folder was written from (metadata.json)."""
    with open(os.path.join(folder, METADATA), encoding="utf-8") as f:
        return json.load(f).get("class_name")


def _load_folder(cls, folder, kwargs):
    """The model of class `cls` that `folder` holds, or None when it holds another kind (a
    backbone folder asked for a task)."""
    from videomae_keras.models.backbone import VideoMAEBackbone

    if not os.path.isfile(os.path.join(folder, BACKBONE_CONFIG)):
        raise ValueError(f"{folder} is not a preset folder: it has no {BACKBONE_CONFIG}. "
                         "Write one with model.save_to_preset(folder).")
    if cls is VideoMAEBackbone:
        names = BACKBONE_CONFIG, BACKBONE_WEIGHTS
    elif os.path.isfile(os.path.join(folder, TASK_CONFIG)):
        names = TASK_CONFIG, TASK_WEIGHTS
    else:
        return None
    with open(os.path.join(folder, names[0]), encoding="utf-8") as f:
        config = json.load(f)
    if cls is not VideoMAEBackbone and config.get("class_name") != cls.__name__:
        return None  # another task: the caller builds this one over the backbone
    if kwargs:
        raise ValueError(
            f"{folder} holds a whole {cls.__name__}; keyword arguments "
            f"({', '.join(sorted(kwargs))}) do not apply (build a new task over "
            f"VideoMAEBackbone.from_preset({folder!r}) to change them)."
        )
    import videomae_keras  # noqa: F401  (registers the layers for deserialisation)

    model = build_for_loading(keras.saving.deserialize_keras_object, config, safe_mode=True)
    weights = os.path.join(folder, names[1])
    if not os.path.isfile(weights):
        raise ValueError(f"{folder} lacks {names[1]}: the preset is incomplete; write it "
                         "again with save_to_preset.")
    model.load_weights(weights)
    return model


def _write_json(path, value):
    check_writable(path, False)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
