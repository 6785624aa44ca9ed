"""Pretraining and fine-tuning runs: data, model, optimiser, logs, checkpoints and resume.

`pretrain(...)` and `finetune(...)` are what `videomae-keras pretrain` / `finetune` call.
Each run writes into its output folder:

- `log.csv` (one row per epoch) and `tensorboard/` (when TensorBoard is installed);
- `backup/`: the state to resume from (`keras.callbacks.BackupAndRestore`): running the
  same command again after an interruption continues where it stopped;
- the final model, `pretrained.keras` or `finetuned.keras`, written atomically;
- `run.json`: the arguments and final figures.

A non-finite loss stops the run with a message naming the epoch and batch.
"""

import contextlib
import json
import math
import os

import numpy as np

import keras

from videomae_keras.atomic import atomic_output
from videomae_keras.configs import TINY_DECODER, TINY_ENCODER
from videomae_keras.data import VideoClipDataset, VideoMixup, read_annotations
from videomae_keras.inference import parse_views
from videomae_keras.masking import RunningCellMaskingGenerator, TubeMaskingGenerator
from videomae_keras.training.distribute import data_parallel
from videomae_keras.training.losses import SmoothedCrossentropy
from videomae_keras.training.optimizers import finetuning_optimizer, pretraining_optimizer

class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and raises `NonFiniteLoss` saying where."""

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            raise NonFiniteLoss(
                f"the loss became {float(loss)} at epoch {self.epoch + 1}, batch {batch + 1}; "
                "lower the learning rate, add --clip-grad, or check the data (the last "
                "backup is kept, so a rerun resumes from the last good epoch)."
            )


class SyncDataEpoch(keras.callbacks.Callback):
    """Keeps the data set's random stream on the epoch being trained (also after a resume)."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def on_epoch_begin(self, epoch, logs=None):
        self.data.set_epoch(epoch)


def _callbacks(out_dir, progress, data, extra=None):
    callbacks = [
        SyncDataEpoch(data),
        StopOnNonFiniteLoss(),
        keras.callbacks.BackupAndRestore(os.path.join(out_dir, "backup")),
        keras.callbacks.CSVLogger(os.path.join(out_dir, "log.csv"), append=True),
    ]
    try:
        import tensorboard  # noqa: F401

        callbacks.append(keras.callbacks.TensorBoard(os.path.join(out_dir, "tensorboard")))
    except ImportError:
        pass
    return callbacks + list(extra or [])


def _jit():
    return "auto" if keras.backend.backend() != "torch" else False


def _save(model, path, overwrite=True):
    """The model alone (no optimizer state or compile settings): a fresh copy is saved."""
    from videomae_keras.convert.loading import rebuild

    clean = rebuild(model)
    with atomic_output(path, overwrite=overwrite, suffix=".keras") as temp:
        clean.save(temp)
    return path


def _write_json(path, data):
    with atomic_output(path, overwrite=True) as temp:
        with open(temp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, default=str)


def pretrain(train_list, out_dir, architecture=None, epochs=100, batch_size=16, base_lr=1.5e-4,
             warmup_epochs=None, mask_ratio=0.9, num_frames=16, image_size=224,
             sampling_rate=4, clip_grad=None, workers=2, seed=0, dtype=None, progress=True,
             distributed=False, callbacks=None, decoder_mask_ratio=0.0, **model_kwargs):
    """Self-supervised pretraining on the videos of an annotation list (labels unused).

    `decoder_mask_ratio` > 0 is VideoMAE V2 dual masking (V2 uses 0.5): the decoder
    reconstructs only a running-cell selection of the tokens.

    `architecture`: a factory name ("S16PT", "B16PT", ...), "tiny" (configs.TINY_ENCODER
    and TINY_DECODER), or None with
    the model given by keyword arguments. `distributed=True` trains data-parallel on the
    local devices (see `videomae_keras.training.distribute`). Returns the trained
    VideoMAEPretrainer.
    """
    from videomae_keras.convert.loading import architecture_factory
    from videomae_keras.models import VideoMAEPretrainer

    keras.utils.set_random_seed(seed)
    os.makedirs(out_dir, exist_ok=True)
    scope = data_parallel() if distributed else contextlib.nullcontext()
    with scope:
        kwargs = dict(num_frames=num_frames, image_size=image_size, mask_ratio=mask_ratio,
                      decoder_mask_ratio=decoder_mask_ratio, dtype=dtype, **model_kwargs)
        if architecture == "tiny":
            model = VideoMAEPretrainer(**TINY_ENCODER, **TINY_DECODER, **kwargs)
        elif architecture:
            model = architecture_factory(architecture)(**kwargs)
        else:
            model = VideoMAEPretrainer(**kwargs)
        data = VideoClipDataset(
            read_annotations(train_list), "pretrain", num_frames, image_size, batch_size,
            sampling_rate=sampling_rate, seed=seed,
            mask_generator=TubeMaskingGenerator(model.grid, mask_ratio),
            decoder_mask_generator=(RunningCellMaskingGenerator(model.grid, decoder_mask_ratio)
                                    if decoder_mask_ratio else None),
            workers=workers, use_multiprocessing=False,
        )
        steps = epochs * len(data)
        warmup = None if warmup_epochs is None else warmup_epochs * len(data)
        model.compile(optimizer=pretraining_optimizer(steps, batch_size, base_lr, warmup,
                                                      clip_grad=clip_grad), jit_compile=_jit())
        # shuffle=False: the data set shuffles itself, seeded per epoch (Keras would reorder
        # batches with Python's global random state, which a resumed run cannot reproduce)
        history = model.fit(data, epochs=epochs, shuffle=False,
                            callbacks=_callbacks(out_dir, progress, data, callbacks),
                            verbose=1 if progress else 0)
    path = _save(model, os.path.join(out_dir, "pretrained.keras"))
    losses = history.history.get("loss", [])
    _write_json(os.path.join(out_dir, "run.json"), {
        "command": "pretrain", "train_list": train_list, "architecture": architecture,
        "epochs": epochs, "batch_size": batch_size, "base_lr": base_lr,
        "mask_ratio": mask_ratio, "decoder_mask_ratio": decoder_mask_ratio,
        "num_frames": num_frames, "image_size": image_size,
        "sampling_rate": sampling_rate, "seed": seed, "final_loss": losses[-1] if losses else None,
        "model": path, "parameters": model.count_params(),
    })
    return model


def classifier_from_pretrained(pretrained, num_classes, drop_path_rate=0.1, head_dropout=0.0,
                               dtype=None):
    """A classifier whose encoder starts from a pretraining model (a `.keras` file, any
    `from_pretrained` source, or a model); fc_norm and the head start fresh, the head scaled
    by 0.001, as the official fine-tuning does. Returns (classifier, transferred count)."""
    from videomae_keras.convert import from_pretrained
    from videomae_keras.models import VideoMAEClassifier

    source = pretrained if isinstance(pretrained, keras.Model) else from_pretrained(pretrained)
    config = source.get_config()
    keep = ("num_frames", "image_size", "num_channels", "patch_size", "tubelet_size",
            "hidden_dim", "depth", "num_heads", "mlp_dim", "qv_bias", "init_values",
            "layer_norm_epsilon")
    kwargs = {k: config[k] for k in keep if k in config}
    model = VideoMAEClassifier(num_classes=num_classes, drop_path_rate=drop_path_rate,
                               head_dropout_rate=head_dropout,
                               fc_norm_epsilon=config.get("layer_norm_epsilon", 1e-6),
                               dtype=dtype, **kwargs)
    weights = {v.path: v for v in source.encoder.weights}
    transferred = 0
    for variable in model.encoder.weights:
        match = weights.get(variable.path)
        if match is not None and tuple(match.shape) == tuple(variable.shape):
            variable.assign(keras.ops.convert_to_numpy(match))
            transferred += 1
    if transferred == 0:
        raise ValueError("No encoder weight of the pretrained model fits the classifier.")
    return model, transferred


def evaluate(model, samples, num_frames, image_size, sampling_rate, batch_size=8, workers=2,
             views=None, sampling="dense"):
    """Top-1 accuracy over `samples` [(path, label)]: one centre clip per video, or with
    `views` ((clips, crops) or "5x3") the official multi-view test: the softmax averaged over
    clips x crops per video, as `predict_video` does."""
    if views:
        return _evaluate_views(model, samples, num_frames, image_size, sampling_rate,
                               batch_size, views, sampling)
    data = VideoClipDataset(samples, "eval", num_frames, image_size, batch_size,
                            sampling_rate=sampling_rate, workers=workers,
                            use_multiprocessing=False)
    correct = total = 0
    for index in range(len(data)):
        video, labels = data[index]
        logits = np.asarray(model.predict_on_batch(video))
        correct += int((logits.argmax(-1) == labels).sum())
        total += len(labels)
    return correct / total


def _evaluate_views(model, samples, num_frames, image_size, sampling_rate, batch_size, views,
                    sampling):
    from videomae_keras.inference import _softmax, load_views, run_batched

    correct = 0
    for path, label in samples:
        clip_views = load_views(path, num_frames, image_size, views, sampling, sampling_rate)
        probabilities = _softmax(run_batched(model, clip_views.data, batch_size))
        correct += int(probabilities.mean(axis=0).argmax() == label)
    return correct / max(1, len(samples))


def finetune(train_list, out_dir, pretrained, num_classes, val_list=None, epochs=50,
             batch_size=16, base_lr=1e-3, layer_decay=0.75, warmup_epochs=None,
             drop_path_rate=0.1, label_smoothing=0.1, flip=True, scale=(0.08, 1.0),
             sampling_rate=4, clip_grad=None, workers=2, seed=0, dtype=None, progress=True,
             mixup=0.0, cutmix=0.0, distributed=False, callbacks=None, test_views=None):
    """Supervised fine-tuning of a pretrained encoder on an annotation list.

    Returns (classifier, {"val_top1": ...}). The clip size comes from the pretrained model.
    With `val_list`, the final model is evaluated on one centre clip per video (`val_top1`)
    and, given `test_views` (e.g. (5, 3) or "5x3", the official Kinetics test), with the
    multi-view protocol too (`val_top1_views`).
    `mixup` / `cutmix` are the Beta alphas of `VideoMixup` (official 0.8 / 1.0; 0 = off).
    """
    keras.utils.set_random_seed(seed)
    os.makedirs(out_dir, exist_ok=True)
    scope = data_parallel() if distributed else contextlib.nullcontext()
    with scope:
        model, transferred = classifier_from_pretrained(pretrained, num_classes, drop_path_rate,
                                                        dtype=dtype)
        frames, height = model.inputs[0].shape[1], model.inputs[0].shape[2]
        samples = read_annotations(train_list)
        bad = sorted({label for _, label in samples if not 0 <= label < num_classes})
        if bad:
            raise ValueError(f"{train_list}: labels {bad[:5]} lie outside 0..{num_classes - 1}.")
        mixer = None
        if mixup > 0 or cutmix > 0:
            mixer = VideoMixup(num_classes, mixup, cutmix, label_smoothing=label_smoothing)
        data = VideoClipDataset(samples, "train", frames, height, batch_size,
                                sampling_rate=sampling_rate, flip=flip, scale=scale, seed=seed,
                                workers=workers, use_multiprocessing=False, mixup=mixer)
        steps = epochs * len(data)
        warmup = None if warmup_epochs is None else warmup_epochs * len(data)
        optimizer = finetuning_optimizer(model, steps, batch_size, base_lr, layer_decay, warmup,
                                         clip_grad=clip_grad)
        model.compile(optimizer=optimizer, loss=SmoothedCrossentropy(num_classes, label_smoothing),
                      metrics=None if mixer else ["sparse_categorical_accuracy"],
                      jit_compile=_jit())
        # shuffle=False: the data set shuffles itself, seeded per epoch (Keras would reorder
        # batches with Python's global random state, which a resumed run cannot reproduce)
        history = model.fit(data, epochs=epochs, shuffle=False,
                            callbacks=_callbacks(out_dir, progress, data, callbacks),
                            verbose=1 if progress else 0)
    results = {"train_loss": history.history.get("loss", [None])[-1],
               "encoder_tensors_transferred": transferred}
    if val_list:
        val = read_annotations(val_list)
        results["val_top1"] = evaluate(model, val, frames, height, sampling_rate, batch_size,
                                       workers)
        if test_views:
            results["val_top1_views"] = evaluate(model, val, frames, height, sampling_rate,
                                                 batch_size, views=test_views)
            results["test_views"] = "%dx%d" % parse_views(test_views)
    path = _save(model, os.path.join(out_dir, "finetuned.keras"))
    _write_json(os.path.join(out_dir, "run.json"), {
        "command": "finetune", "train_list": train_list, "val_list": val_list,
        "pretrained": str(pretrained), "num_classes": num_classes, "epochs": epochs,
        "batch_size": batch_size, "base_lr": base_lr, "layer_decay": layer_decay,
        "label_smoothing": label_smoothing, "mixup": mixup, "cutmix": cutmix, "flip": flip,
        "seed": seed, "model": path,
        **results,
    })
    return model, results
