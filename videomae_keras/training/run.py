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

import dataclasses
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
from videomae_keras.training.settings import FinetuneSettings, PretrainSettings


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


def _join(settings, batch_size):
    """(process, processes): joins a multi-process run when asked (or on a TPU VM slice),
    before anything touches a device, and checks that the run can be split."""
    process, processes = initialize(settings.coordinator, settings.num_processes,
                                    settings.process_id)
    if processes > 1:
        if not settings.distribution:
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


def _scope(settings):
    """The context of a run's build, compile and fit, after checking that each batch splits
    evenly over the devices that share it."""
    check_batch_size(settings.batch_size, settings.distribution, settings.mesh)
    return distribution_scope(settings.distribution, settings.mesh)


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


def _settings(kind, settings, values, **given):
    """`kind` settings from `settings` and keywords; `given` are the positional ones (None:
    not given); `distributed=True`, the older spelling of distribution="data"."""
    if values.pop("distributed", False):
        if values.get("distribution") not in (None, "data"):
            raise ValueError("distributed=True means distribution='data'; give one of them.")
        values["distribution"] = "data"
    return kind.of(settings, **values, **{k: v for k, v in given.items() if v is not None})


def pretrain(train_list, out_dir, architecture=None, settings=None, progress=True,
             callbacks=None, **values):
    """Self-supervised pretraining on the videos of an annotation list (labels unused).

    The run's settings are `PretrainSettings` (`videomae_keras.training.settings`: what each
    one means, its default and its command-line option): a `settings` object, and keywords
    replacing its fields (`epochs=2`); other keywords are model arguments (VideoMAEPretrainer,
    with `architecture=None`). `out_dir` must be new, or hold this same run (interrupted: it
    resumes; finished: nothing is done), unless `overwrite=True`. In a multi-process run
    (`coordinator`, `num_processes`, `process_id`: the same call on every host) each process
    decodes its share of the global batch and only process 0 writes (`out_dir` must be one
    folder all processes see). Returns the trained VideoMAEPretrainer.
    """
    from videomae_keras.models.saving import load_keras_model
    from videomae_keras.models.factories import build
    from videomae_keras.models import VideoMAEPretrainer

    names = {f.name for f in dataclasses.fields(PretrainSettings)} | {"distributed"}
    model_arguments = {k: values.pop(k) for k in list(values) if k not in names}
    s = _settings(PretrainSettings, settings, values, architecture=architecture)
    if model_arguments:
        s = dataclasses.replace(s, model={**s.model, **model_arguments})
    final = os.path.join(out_dir, "pretrained.keras")
    process, processes = _join(s, s.batch_size)
    writer, progress = process == 0, progress and process == 0
    scope = _scope(s)  # checked before any write
    state = _open(out_dir, "pretrain", s.recorded(),
                  {"train_list": run_folder.fingerprint(train_list)}, "pretrained.keras",
                  s.overwrite, writer=writer)
    if state.action in ("finished", "evaluate"):
        _say(f"{out_dir} is a finished pretrain run ({final}); nothing to do")
        model = load_keras_model(final)
        model.run_state = state
        return model
    samples = _checked(train_list, state, "train_list", progress, s.workers, s.check_videos)
    keras.utils.set_random_seed(s.seed)
    os.makedirs(out_dir, exist_ok=True)
    with scope:
        kwargs = dict(num_frames=s.num_frames, image_size=s.image_size,
                      mask_ratio=s.mask_ratio, decoder_mask_ratio=s.decoder_mask_ratio,
                      dtype=s.dtype, remat=s.remat, **s.recorded()["model"])
        if s.architecture:
            model = build("tinyPT" if s.architecture == "tiny" else s.architecture, **kwargs)
        else:
            model = VideoMAEPretrainer.from_arguments(**kwargs)
        data = VideoClipDataset(
            samples, "pretrain", s.num_frames, s.image_size, s.batch_size,
            sampling_rate=s.sampling_rate, seed=s.seed,
            mask_generator=TubeMaskingGenerator(model.grid, s.mask_ratio),
            decoder_mask_generator=(
                RunningCellMaskingGenerator(model.grid, s.decoder_mask_ratio)
                if s.decoder_mask_ratio else None),
            workers=s.workers, use_multiprocessing=False, share=(process, processes),
        )
        steps, warmup = _updates(s.epochs, s.warmup_epochs, len(data), s.accumulate)
        model.compile(optimizer=pretraining_optimizer(
            steps, s.batch_size * s.accumulate, s.base_lr, warmup, clip_grad=s.clip_grad,
            accumulate=s.accumulate), jit_compile=_jit())
        if writer:
            run_folder.write_record(state)
        history, _ = _fit(model, data, out_dir, s.epochs, progress, callbacks, writer)
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
    """A classifier whose encoder starts from a pretraining model (a model, or a `.keras`
    file); fc_norm and the head start fresh, the head scaled by 0.001, as the official
    fine-tuning does; `class_names` are stored in the model; `remat` as in `finetune`.
    Returns (classifier, transferred count)."""
    from videomae_keras.models import VideoMAEBackbone, VideoMAEClassifier

    source = _pretrained_loader(pretrained)()
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


def _pretrained_loader(pretrained, loader=None):
    """A function giving the model `finetune` starts from, checked now and called when
    training starts: `pretrained` is a model, a `.keras` file, or any other source read by
    `loader` (the command passes `from_pretrained`; training reads no checkpoints)."""
    from videomae_keras.models.saving import load_keras_model

    if isinstance(pretrained, keras.Model):
        return lambda: pretrained
    path = os.fspath(pretrained)
    if loader is not None:
        return lambda: loader(path)
    if not path.endswith(".keras"):
        raise ValueError(f"pretrained={path!r} is not a .keras file; load it with "
                         "videomae_keras.from_pretrained and pass the model, or pass "
                         "loader=videomae_keras.from_pretrained.")
    return lambda: load_keras_model(path)


def finetune(train_list, out_dir, pretrained, num_classes=None, settings=None, progress=True,
             callbacks=None, loader=None, **values):
    """Supervised fine-tuning of a pretrained encoder on an annotation list.

    `pretrained`: a model, a `.keras` file (what `pretrain` writes), or any other source
    given with `loader`, the function that reads it (`videomae_keras.from_pretrained`);
    it is read only when training starts. The run's settings are `FinetuneSettings` (a
    `settings` object, and keywords replacing its fields); the clip size comes from the
    pretrained model. Returns (classifier, {"val_top1": ...}). With `val_list`, the final
    model is evaluated on one centre clip per video (`val_top1`) and, given `test_views`,
    with the multi-view protocol too (`val_top1_views`). Both lists are checked before
    training; the model is saved before it is evaluated, and an evaluation that fails
    raises EvaluationError with the model kept (a rerun of the command evaluates again).
    Run folders and several processes as in `pretrain`; in a multi-process run process 0
    evaluates the saved model on its own devices.
    """
    from videomae_keras.models.saving import load_keras_model

    s = _settings(FinetuneSettings, settings, values, num_classes=num_classes)
    load_pretrained = _pretrained_loader(pretrained, loader)
    final = os.path.join(out_dir, "finetuned.keras")
    class_names, num_classes = resolve_class_names(train_list, s.labels, s.num_classes)
    source = (run_folder.fingerprint(pretrained) if isinstance(pretrained, (str, os.PathLike))
              else {"model": getattr(pretrained, "name", type(pretrained).__name__)})
    arguments = {**s.recorded(), "num_classes": num_classes, "class_names": class_names}
    evaluation = {"val_list": run_folder.fingerprint(s.val_list) if s.val_list else None,
                  "test_views": "%dx%d" % parse_views(s.test_views) if s.test_views else None}
    process, processes = _join(s, s.batch_size)
    writer, progress = process == 0, progress and process == 0
    scope = _scope(s)  # checked before any write
    state = _open(out_dir, "finetune", arguments,
                  {"train_list": run_folder.fingerprint(train_list), "pretrained": source},
                  "finetuned.keras", s.overwrite, evaluation, writer=writer)
    if state.action == "finished":
        _say(f"{out_dir} is a finished finetune run ({final}); nothing to do")
        model = load_keras_model(final)
        model.run_state = state
        return model, _results(state.record)
    val = None
    if s.val_list:
        val = _checked(s.val_list, state, "val_list", progress, s.workers, s.check_videos,
                       num_classes=num_classes, class_names=class_names)
    if state.action == "evaluate":  # trained before; its evaluation failed or changed
        _say(f"{out_dir} is a finished finetune run; evaluating {final} again")
        model = load_keras_model(final)
        results = _evaluate_saved(model, state, val, s)
        model.run_state = state
        return model, results
    samples = _checked(train_list, state, "train_list", progress, s.workers, s.check_videos,
                       num_classes=num_classes, class_names=class_names)
    keras.utils.set_random_seed(s.seed)
    os.makedirs(out_dir, exist_ok=True)
    with scope:
        model, transferred = classifier_from_pretrained(
            load_pretrained(), num_classes, s.drop_path_rate,
            dtype=s.dtype, class_names=class_names, remat=s.remat)
        frames, height = model.inputs[0].shape[1], model.inputs[0].shape[2]
        mixer = None
        if s.mixup > 0 or s.cutmix > 0:
            mixer = VideoMixup(num_classes, s.mixup, s.cutmix, label_smoothing=s.label_smoothing)
        data = VideoClipDataset(samples, "train", frames, height, s.batch_size,
                                sampling_rate=s.sampling_rate, flip=s.flip, scale=s.scale,
                                seed=s.seed, workers=s.workers, use_multiprocessing=False,
                                mixup=mixer, share=(process, processes))
        steps, warmup = _updates(s.epochs, s.warmup_epochs, len(data), s.accumulate)
        optimizer = finetuning_optimizer(model, steps, s.batch_size * s.accumulate, s.base_lr,
                                         s.layer_decay, warmup, clip_grad=s.clip_grad,
                                         accumulate=s.accumulate)
        model.compile(optimizer=optimizer,
                      loss=SmoothedCrossentropy(num_classes, s.label_smoothing),
                      metrics=None if mixer else ["sparse_categorical_accuracy"],
                      jit_compile=_jit())
        if writer:
            run_folder.write_record(state)
        history, _ = _fit(model, data, out_dir, s.epochs, progress, callbacks, writer)
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
    results = _evaluate_saved(model, state, val, s)
    model.run_state = state
    return model, results


_RESULT_KEYS = ("train_loss", "encoder_tensors_transferred", "val_top1", "val_top1_views",
                "test_views", "evaluation_error")


def _results(record):
    return {k: record[k] for k in _RESULT_KEYS if record.get(k) is not None}


def _evaluate_saved(model, state, val, settings):
    """Evaluates the saved model on the validation list and records the figures; a failure
    is recorded and raised as EvaluationError, the model staying where it was saved."""
    frames, height = model.inputs[0].shape[1], model.inputs[0].shape[2]
    s, val_list, test_views = settings, settings.val_list, settings.test_views
    results = {"val_top1": None, "val_top1_views": None, "test_views": None,
               "evaluation_error": None}
    if val:
        try:
            results["val_top1"] = evaluate(model, val, frames, height, s.sampling_rate,
                                           s.batch_size, s.workers)
            if test_views:
                results["val_top1_views"] = evaluate(model, val, frames, height,
                                                     s.sampling_rate, s.batch_size,
                                                     views=test_views)
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
