"""Pretraining and fine-tuning runs: data, model, optimiser, logs, checkpoints and resume.

`pretrain(...)` and `finetune(...)` are what `videomae-keras pretrain` / `finetune` call.
Each run writes into its output folder:

- `run.json`: the command, the arguments that change the result and the sha256 of the lists
  and files it reads, written when training starts (status "running") and completed with the
  final figures (status "finished");
- `log.csv` (one row per epoch) and `tensorboard/` (when TensorBoard is installed);
- `backup/`: the state after each epoch (`videomae_keras.training.backup`), written
  atomically; the two newest are kept, and a rerun of the same command resumes from the
  newest that reads back whole;
- the final model, `pretrained.keras` or `finetuned.keras`, written atomically before any
  evaluation, after which the backups go.

Before the first step every list is checked (each video exists and opens, each label is in
range). A folder holding another run is refused unless `overwrite=True`; a finished run is
left as it is. A non-finite loss stops the run with a message naming the epoch and batch.
"""

import math
import os
import shutil
import sys

import numpy as np

import keras

from videomae_keras.atomic import atomic_output
from videomae_keras.data import VideoClipDataset, VideoMixup
from videomae_keras.data.annotations import check_annotations, label_names
from videomae_keras.masking import RunningCellMaskingGenerator, TubeMaskingGenerator
from videomae_keras.options import parse_views
from videomae_keras.training import backup, run_folder
from videomae_keras.training.distribute import (
    barrier,
    check_batch_size,
    distribution_scope,
    initialize,
    whole_values,
)
from videomae_keras.losses import SmoothedCrossentropy
from videomae_keras.training.optimizers import finetuning_optimizer, pretraining_optimizer


class EvaluationError(RuntimeError):
    """Training finished and the model was saved, but evaluating it failed."""


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
                "lower the learning rate or add --clip-grad and start again with --overwrite, "
                "or fix the data and rerun the same command (the last backup is kept: it "
                "resumes from the last good epoch)."
            )


class SyncDataEpoch(keras.callbacks.Callback):
    """Keeps the data set's random stream on the epoch being trained (also after a resume)."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def on_epoch_begin(self, epoch, logs=None):
        self.data.set_epoch(epoch)


def _callbacks(out_dir, data, extra=None, writer=True):
    """The run's callbacks; in a multi-process run only the writer (process 0) logs, and
    every process takes part in gathering each backup, which the writer saves."""
    callbacks = [SyncDataEpoch(data), StopOnNonFiniteLoss()]
    if writer:  # the log row before the backup: a kill between them repeats the row, which
        # the resumed run trims (trim_log), where the other order would lose it
        callbacks.append(keras.callbacks.CSVLogger(os.path.join(out_dir, "log.csv"),
                                                   append=True))
    callbacks.append(backup.EpochBackup(os.path.join(out_dir, "backup"), writer=writer))
    if writer:
        try:
            import tensorboard  # noqa: F401

            callbacks.append(keras.callbacks.TensorBoard(os.path.join(out_dir, "tensorboard")))
        except ImportError:
            pass
    return callbacks + list(extra or [])


def _say(message):
    """Lines the user must see whatever `progress` says (a finished run, a fallback)."""
    print(f"videomae-keras: {message}", file=sys.stderr, flush=True)


def _open(out_dir, command, arguments, inputs, model_file, overwrite, evaluation=None,
          writer=True):
    """The run folder's verdict; every process of a multi-process run reaches the same one
    from the same files, and only the writer removes an old run (overwrite)."""
    state = run_folder.open_run(out_dir, command, arguments, inputs, model_file,
                                overwrite=overwrite, evaluation=evaluation, remove=writer)
    barrier("videomae-keras: run folder opened")  # nobody reads while the writer removes
    if state.note and writer:
        _say(f"{out_dir}: {state.note}")
    return state


def _join(coordinator, num_processes, process_id, distribution, distributed, batch_size):
    """(process, processes): joins a multi-process run when asked (or on a TPU VM slice),
    before anything touches a device, and checks that the run can be split."""
    process, processes = initialize(coordinator, num_processes, process_id)
    if processes > 1:
        if not (distribution or distributed):
            raise ValueError("a multi-process run trains with --distribution data or fsdp "
                             "(distribution='data' or 'fsdp').")
        if batch_size % processes:
            raise ValueError(f"batch size {batch_size} does not split over {processes} "
                             f"processes; use a multiple of {processes}.")
    return process, processes


def _checked(path, state, key, progress, workers, check_videos, **kwargs):
    """The samples of an annotation list, checked whole unless this run already checked the
    same content."""
    fingerprint = state.record["inputs"].get(key) or state.record["evaluation"].get(key)
    done = state.record.get("checked", {})
    if check_videos and fingerprint and done.get(key) == fingerprint.get("sha256"):
        check_videos = False  # a resumed run: every video opened when it started
    stages = None
    if progress:
        from videomae_keras.progress import Stages

        stages = Stages(0)
    samples = check_annotations(path, open_videos=check_videos, workers=workers,
                                progress=stages, **kwargs)
    if fingerprint and fingerprint.get("sha256"):
        state.record.setdefault("checked", {})[key] = fingerprint["sha256"]
    return samples


def _fit(model, data, out_dir, epochs, progress, callbacks, writer=True):
    """`model.fit` from the newest readable backup (or from the start); returns the history
    and the epoch it started at. Every process of a multi-process run reads the same
    backup; only the writer cleans up and logs."""
    initial = backup.restore(model, os.path.join(out_dir, "backup"), epochs,
                             report=_say if writer else (lambda message: None), write=writer)
    if writer:
        run_folder.trim_log(os.path.join(out_dir, "log.csv"), initial)
    if initial and progress:
        _say(f"{out_dir}: resuming at epoch {initial + 1} of {epochs}")
    # shuffle=False: the data set shuffles itself, seeded per epoch (Keras would reorder
    # batches with Python's global random state, which a resumed run cannot reproduce)
    history = model.fit(data, epochs=epochs, initial_epoch=initial, shuffle=False,
                        callbacks=_callbacks(out_dir, data, callbacks, writer),
                        verbose=1 if progress else 0)
    return history, initial


def _last_logged(out_dir, key):
    """The last epoch's `key` from log.csv (the history of a resumed run may be empty)."""
    path = os.path.join(out_dir, "log.csv")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        rows = [row.split(",") for row in f.read().strip().splitlines()]
    if len(rows) < 2 or key not in rows[0]:
        return None
    try:
        return float(rows[-1][rows[0].index(key)])
    except (ValueError, IndexError):
        return None


def _finish(state, out_dir, results):
    run_folder.write_record(state, status="finished", **results)
    shutil.rmtree(os.path.join(out_dir, "backup"), ignore_errors=True)


def _scope(distribution, distributed, mesh, batch_size):
    """The context of a run's build, compile and fit (`distributed=True`: "data"), after
    checking that each batch splits evenly over the devices that share it."""
    if distributed and distribution not in (None, "data"):
        raise ValueError("distributed=True means distribution='data'; give one of them.")
    distribution = distribution or ("data" if distributed else None)
    check_batch_size(batch_size, distribution, mesh)
    return distribution_scope(distribution, mesh)


def _updates(epochs, warmup_epochs, batches, accumulate):
    """(optimizer updates in the run, warm-up updates or None): each update takes
    `accumulate` batches."""
    accumulate = int(accumulate or 1)
    if accumulate < 1:
        raise ValueError(f"accumulate must be at least 1; got {accumulate}.")
    updates = epochs * batches // accumulate
    if updates < 1:
        raise ValueError(f"{epochs} epochs of {batches} batches make no update of {accumulate} "
                         "accumulated batches; lower --accumulate or train longer.")
    warmup = None if warmup_epochs is None else warmup_epochs * batches // accumulate
    return updates, warmup


def _jit():
    return "auto" if keras.backend.backend() != "torch" else False


def _save(model, path, overwrite=True, writer=True):
    """The model alone (no optimizer state or compile settings): a fresh copy is saved. In
    a multi-process run every process gathers the weights and the writer saves them."""
    from videomae_keras.models.saving import rebuild

    with whole_values(model):
        if writer:
            clean = rebuild(model)
            with atomic_output(path, overwrite=overwrite, suffix=".keras") as temp:
                clean.save(temp)
    barrier("videomae-keras: model saved")
    return path


def pretrain(train_list, out_dir, architecture=None, epochs=100, batch_size=16, base_lr=1.5e-4,
             warmup_epochs=None, mask_ratio=0.9, num_frames=16, image_size=224,
             sampling_rate=4, clip_grad=None, workers=2, seed=0, dtype=None, progress=True,
             distributed=False, callbacks=None, decoder_mask_ratio=0.0, overwrite=False,
             check_videos=True, distribution=None, mesh=None, accumulate=1, remat=False,
             coordinator=None, num_processes=None, process_id=None, **model_kwargs):
    """Self-supervised pretraining on the videos of an annotation list (labels unused).

    `decoder_mask_ratio` > 0 is VideoMAE V2 dual masking (V2 uses 0.5): the decoder
    reconstructs only a running-cell selection of the tokens.

    `architecture`: an architecture name ("S16PT", "B16PT", ..., `presets.ARCHITECTURES`),
    "tiny" (the demo size), or None with the model given by keyword arguments.
    `distribution`: None (one device), "data" (data parallel on the local devices) or
    "fsdp" (JAX: weights, gradients and optimizer state sharded over a `mesh` "BxM", see
    `videomae_keras.training.distribute`); `distributed=True` is "data". `accumulate` N
    averages the gradients of N batches into each update (Keras' gradient accumulation): the
    update's batch is N x `batch_size`, which the learning rate scales with, and `epochs`,
    warm-up and decay count real updates. `remat=True` recomputes each transformer block in
    the backward pass (less activation memory, about a third more compute, the same
    result: a rerun may switch it). `coordinator` ("HOST:PORT" of process 0),
    `num_processes` and `process_id` join a multi-process run (the same call on every
    host; automatic on a TPU VM slice): `batch_size` is the global batch, each process
    decodes its share of it, and only process 0 writes (`out_dir` must be one folder all
    processes see: a shared disk or a bucket mounted on each host). `out_dir` must be new,
    or hold this same run (interrupted: it resumes; finished: nothing is done), unless
    `overwrite=True`.
    `check_videos=False` checks only that the listed files exist, not that they open.
    Returns the trained VideoMAEPretrainer.
    """
    from videomae_keras.models.saving import load_keras_model
    from videomae_keras.models.factories import build
    from videomae_keras.models import VideoMAEPretrainer

    final = os.path.join(out_dir, "pretrained.keras")
    arguments = dict(architecture=architecture, epochs=epochs, batch_size=batch_size,
                     base_lr=base_lr, warmup_epochs=warmup_epochs, mask_ratio=mask_ratio,
                     num_frames=num_frames, image_size=image_size, sampling_rate=sampling_rate,
                     clip_grad=clip_grad, seed=seed, dtype=dtype,
                     decoder_mask_ratio=decoder_mask_ratio, accumulate=accumulate,
                     model=model_kwargs)
    process, processes = _join(coordinator, num_processes, process_id, distribution,
                               distributed, batch_size)
    writer, progress = process == 0, progress and process == 0
    scope = _scope(distribution, distributed, mesh, batch_size)  # checked before any write
    state = _open(out_dir, "pretrain", arguments,
                  {"train_list": run_folder.fingerprint(train_list)}, "pretrained.keras",
                  overwrite, writer=writer)
    if state.action in ("finished", "evaluate"):
        _say(f"{out_dir} is a finished pretrain run ({final}); nothing to do")
        model = load_keras_model(final)
        model.run_state = state
        return model
    samples = _checked(train_list, state, "train_list", progress, workers, check_videos)
    keras.utils.set_random_seed(seed)
    os.makedirs(out_dir, exist_ok=True)
    with scope:
        kwargs = dict(num_frames=num_frames, image_size=image_size, mask_ratio=mask_ratio,
                      decoder_mask_ratio=decoder_mask_ratio, dtype=dtype, remat=remat,
                      **model_kwargs)
        if architecture:
            model = build("tinyPT" if architecture == "tiny" else architecture, **kwargs)
        else:
            model = VideoMAEPretrainer.from_arguments(**kwargs)
        data = VideoClipDataset(
            samples, "pretrain", num_frames, image_size, batch_size,
            sampling_rate=sampling_rate, seed=seed,
            mask_generator=TubeMaskingGenerator(model.grid, mask_ratio),
            decoder_mask_generator=(RunningCellMaskingGenerator(model.grid, decoder_mask_ratio)
                                    if decoder_mask_ratio else None),
            workers=workers, use_multiprocessing=False, share=(process, processes),
        )
        steps, warmup = _updates(epochs, warmup_epochs, len(data), accumulate)
        model.compile(optimizer=pretraining_optimizer(
            steps, batch_size * accumulate, base_lr, warmup, clip_grad=clip_grad,
            accumulate=accumulate), jit_compile=_jit())
        if writer:
            run_folder.write_record(state)
        history, _ = _fit(model, data, out_dir, epochs, progress, callbacks, writer)
    path = _save(model, final, writer=writer)
    losses = history.history.get("loss", [])
    if writer:
        _finish(state, out_dir, {
            "final_loss": losses[-1] if losses else _last_logged(out_dir, "loss"),
            "model": path, "parameters": model.count_params(),
        })
    model.run_state = state
    return model


def classifier_from_pretrained(pretrained, num_classes, drop_path_rate=0.1, head_dropout=0.0,
                               dtype=None, class_names=None, remat=False):
    """A classifier whose encoder starts from a pretraining model (a `.keras` file, any
    `from_pretrained` source, or a model); fc_norm and the head start fresh, the head scaled
    by 0.001, as the official fine-tuning does; `class_names` are stored in the model;
    `remat` as in `finetune`. Returns (classifier, transferred count)."""
    from videomae_keras.convert import from_pretrained
    from videomae_keras.models import VideoMAEBackbone, VideoMAEClassifier

    source = pretrained if isinstance(pretrained, keras.Model) else from_pretrained(pretrained)
    # the pretrained architecture, without its final norm (the official recipe drops it:
    # mean pooling and fc_norm replace it) and with the fine-tuning drop path and remat
    architecture = {k: v for k, v in source.architecture.items()
                    if k not in ("num_masked", "use_final_norm", "drop_path_rate", "remat")}
    backbone = VideoMAEBackbone(**architecture, drop_path_rate=drop_path_rate, remat=remat,
                                dtype=dtype)
    weights = {v.path: v for v in source.encoder.weights}
    transferred = 0
    for variable in backbone.weights:
        match = weights.get(variable.path)
        if match is not None and tuple(match.shape) == tuple(variable.shape):
            variable.assign(keras.ops.convert_to_numpy(match))
            transferred += 1
    if transferred == 0:
        raise ValueError("No encoder weight of the pretrained model fits the classifier.")
    model = VideoMAEClassifier(backbone, num_classes=num_classes, head_dropout_rate=head_dropout,
                               fc_norm_epsilon=architecture["layer_norm_epsilon"],
                               class_names=class_names)
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


def resolve_class_names(train_list, labels=None, num_classes=None):
    """(class names or None, num_classes) of a fine-tuning run: names from `labels` (a text
    file, one name per line, or a list), else the train list's label column when it holds
    names (sorted), else none; the class count from the names when not given."""
    names = None
    if labels is not None:
        if isinstance(labels, (str, os.PathLike)):
            path = os.fspath(labels)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path}: no such label file (one class name per line).")
            with open(path, encoding="utf-8") as f:
                names = [line.strip() for line in f if line.strip()]
        else:
            names = [str(n) for n in labels]
        if len(set(names)) != len(names):
            raise ValueError(f"{labels}: class names repeat; each class needs its own name.")
    else:
        names = label_names(train_list)
    if names is not None:
        if num_classes is not None and int(num_classes) != len(names):
            raise ValueError(
                f"{labels or train_list} names {len(names)} classes but num_classes is "
                f"{num_classes}; give the same count (or leave --num-classes out)."
            )
        num_classes = len(names)
    if num_classes is None:
        raise ValueError(f"{train_list} has numeric labels: give the number of classes "
                         "(--num-classes, num_classes=), or class names with --labels.")
    return names, int(num_classes)


def finetune(train_list, out_dir, pretrained, num_classes=None, val_list=None, epochs=50,
             batch_size=16, base_lr=1e-3, layer_decay=0.75, warmup_epochs=None,
             drop_path_rate=0.1, label_smoothing=0.1, flip=True, scale=(0.08, 1.0),
             sampling_rate=4, clip_grad=None, workers=2, seed=0, dtype=None, progress=True,
             mixup=0.0, cutmix=0.0, distributed=False, callbacks=None, test_views=None,
             labels=None, overwrite=False, check_videos=True, distribution=None, mesh=None,
             accumulate=1, remat=False, coordinator=None, num_processes=None,
             process_id=None):
    """Supervised fine-tuning of a pretrained encoder on an annotation list.

    Returns (classifier, {"val_top1": ...}). The clip size comes from the pretrained model.
    With `val_list`, the final model is evaluated on one centre clip per video (`val_top1`)
    and, given `test_views` (e.g. (5, 3) or "5x3", the official Kinetics test), with the
    multi-view protocol too (`val_top1_views`). Both lists are checked before training; the
    model is saved before it is evaluated, and an evaluation that fails raises
    EvaluationError with the model kept (a rerun of the command evaluates again).
    `mixup` / `cutmix` are the Beta alphas of `VideoMixup` (official 0.8 / 1.0; 0 = off).
    `labels`: class names (a file, one per line, or a list), stored in the model; a train
    list whose labels are names gives them too. `overwrite`, `check_videos`,
    `distribution`, `mesh`, `accumulate`, `remat`, `coordinator`, `num_processes` and
    `process_id` as in `pretrain`; in a multi-process run process 0 evaluates the saved model
    on its own devices.
    """
    from videomae_keras.models.saving import load_keras_model

    final = os.path.join(out_dir, "finetuned.keras")
    class_names, num_classes = resolve_class_names(train_list, labels, num_classes)
    source = (run_folder.fingerprint(pretrained) if isinstance(pretrained, (str, os.PathLike))
              else {"model": getattr(pretrained, "name", type(pretrained).__name__)})
    arguments = dict(num_classes=num_classes, class_names=class_names, epochs=epochs,
                     batch_size=batch_size, base_lr=base_lr, layer_decay=layer_decay,
                     warmup_epochs=warmup_epochs, drop_path_rate=drop_path_rate,
                     label_smoothing=label_smoothing, flip=flip, scale=scale,
                     sampling_rate=sampling_rate, clip_grad=clip_grad, seed=seed, dtype=dtype,
                     mixup=mixup, cutmix=cutmix, accumulate=accumulate)
    evaluation = {"val_list": run_folder.fingerprint(val_list) if val_list else None,
                  "test_views": "%dx%d" % parse_views(test_views) if test_views else None}
    process, processes = _join(coordinator, num_processes, process_id, distribution,
                               distributed, batch_size)
    writer, progress = process == 0, progress and process == 0
    scope = _scope(distribution, distributed, mesh, batch_size)  # checked before any write
    state = _open(out_dir, "finetune", arguments,
                  {"train_list": run_folder.fingerprint(train_list), "pretrained": source},
                  "finetuned.keras", overwrite, evaluation, writer=writer)
    if state.action == "finished":
        _say(f"{out_dir} is a finished finetune run ({final}); nothing to do")
        model = load_keras_model(final)
        model.run_state = state
        return model, _results(state.record)
    val = None
    if val_list:
        val = _checked(val_list, state, "val_list", progress, workers, check_videos,
                       num_classes=num_classes, class_names=class_names)
    if state.action == "evaluate":  # trained before; its evaluation failed or changed
        _say(f"{out_dir} is a finished finetune run; evaluating {final} again")
        model = load_keras_model(final)
        frames, height = model.inputs[0].shape[1], model.inputs[0].shape[2]
        results = _evaluate_saved(model, state, val, val_list, frames, height, sampling_rate,
                                  batch_size, workers, test_views)
        model.run_state = state
        return model, results
    samples = _checked(train_list, state, "train_list", progress, workers, check_videos,
                       num_classes=num_classes, class_names=class_names)
    keras.utils.set_random_seed(seed)
    os.makedirs(out_dir, exist_ok=True)
    with scope:
        model, transferred = classifier_from_pretrained(pretrained, num_classes, drop_path_rate,
                                                        dtype=dtype, class_names=class_names,
                                                        remat=remat)
        frames, height = model.inputs[0].shape[1], model.inputs[0].shape[2]
        mixer = None
        if mixup > 0 or cutmix > 0:
            mixer = VideoMixup(num_classes, mixup, cutmix, label_smoothing=label_smoothing)
        data = VideoClipDataset(samples, "train", frames, height, batch_size,
                                sampling_rate=sampling_rate, flip=flip, scale=scale, seed=seed,
                                workers=workers, use_multiprocessing=False, mixup=mixer,
                                share=(process, processes))
        steps, warmup = _updates(epochs, warmup_epochs, len(data), accumulate)
        optimizer = finetuning_optimizer(model, steps, batch_size * accumulate, base_lr,
                                         layer_decay, warmup, clip_grad=clip_grad,
                                         accumulate=accumulate)
        model.compile(optimizer=optimizer, loss=SmoothedCrossentropy(num_classes, label_smoothing),
                      metrics=None if mixer else ["sparse_categorical_accuracy"],
                      jit_compile=_jit())
        if writer:
            run_folder.write_record(state)
        history, _ = _fit(model, data, out_dir, epochs, progress, callbacks, writer)
    path = _save(model, final, writer=writer)  # before any evaluation: never lost to it
    losses = history.history.get("loss", [])
    state.record.update(model=path, train_loss=losses[-1] if losses else _last_logged(
        out_dir, "loss"), encoder_tensors_transferred=transferred)
    if not writer:
        model.run_state = state
        return model, {}
    _finish(state, out_dir, {})
    if processes > 1:  # the trained weights are spread over the hosts: evaluate the file
        model = load_keras_model(final)
    results = _evaluate_saved(model, state, val, val_list, frames, height, sampling_rate,
                              batch_size, workers, test_views)
    model.run_state = state
    return model, results


_RESULT_KEYS = ("train_loss", "encoder_tensors_transferred", "val_top1", "val_top1_views",
                "test_views", "evaluation_error")


def _results(record):
    return {k: record[k] for k in _RESULT_KEYS if record.get(k) is not None}


def _evaluate_saved(model, state, val, val_list, frames, height, sampling_rate, batch_size,
                    workers, test_views):
    """Evaluates the saved model on the validation list and records the figures; a failure
    is recorded and raised as EvaluationError, the model staying where it was saved."""
    results = {"val_top1": None, "val_top1_views": None, "test_views": None,
               "evaluation_error": None}
    if val:
        try:
            results["val_top1"] = evaluate(model, val, frames, height, sampling_rate,
                                           batch_size, workers)
            if test_views:
                results["val_top1_views"] = evaluate(model, val, frames, height, sampling_rate,
                                                     batch_size, views=test_views)
                results["test_views"] = "%dx%d" % parse_views(test_views)
        except Exception as e:
            text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            run_folder.write_record(state, evaluation_error=text, **{
                k: v for k, v in results.items() if k != "evaluation_error"})
            raise EvaluationError(
                f"the model is saved ({state.record.get('model')}), but evaluating it on "
                f"{val_list} failed: {text}. Fix the list and rerun the same command to "
                "evaluate it again (training is not repeated)."
            ) from e
    run_folder.write_record(state, evaluated=True, **results)
    return _results(state.record)
