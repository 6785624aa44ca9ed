"""The settings of a training run, each written once: `PretrainSettings` and
`FinetuneSettings`.

A field is one setting: its Python type and default, its command-line option (flags,
argparse keywords and, where the command's default differs from the function's, the
command's) and whether `run.json` records it. Recorded settings are those that change the
trained model: a rerun of a folder with other recorded settings is refused, where the others
(workers, devices, remat, hosts, ...) may change between an interrupted run and its resume.
The command line is built from the fields (`add_arguments`), the run functions take them as
keywords (`pretrain(..., epochs=2)`) or as one object (`settings=`), and `recorded()` is what
`run.json` holds, so a new setting is one new field.
"""

import dataclasses
from typing import Optional

from videomae_keras.options import (
    DISTRIBUTIONS,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_FLOAT,
    RATIO,
    at_least,
    fraction,
    views,
)

_UNSET = object()


def setting(default, *flags, record=True, command_default=_UNSET, **option):
    """A settings field. `flags`: its command-line option (none: Python only); `option`:
    the argparse keywords (type, action, help, ...); `record`: True (a run.json argument),
    False (not recorded) or "model" (recorded among the model's arguments, when set)."""
    metadata = {"flags": flags, "record": record, "option": option}
    if command_default is not _UNSET:
        metadata["command_default"] = command_default
    if isinstance(default, dict):
        return dataclasses.field(default_factory=dict, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _lower_end(text):
    """--min-scale: (the smallest random-resized-crop area, 1.0)."""
    return (fraction(0.0, 1.0, True, False)(text), 1.0)


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """What pretraining and fine-tuning share. `distribution`: None (one device), "data"
    (each batch split over the local devices) or "fsdp" (JAX: weights, gradients and
    optimizer state sharded over a `mesh` "BxM", see `videomae_keras.training.distribute`).
    `accumulate` N averages the gradients of N batches into each update (the update's batch,
    which the learning rate scales with, is N x `batch_size`; epochs, warm-up and decay
    count real updates). `remat` recomputes each transformer block in the backward pass.
    `coordinator` ("HOST:PORT" of process 0), `num_processes` and `process_id` join a
    multi-process run (automatic on a TPU VM slice): `batch_size` is then the global batch.
    `overwrite` replaces another run in the folder; `check_videos=False` only checks that
    the listed videos exist."""

    epochs: int = setting(100, "--epochs", type=POSITIVE)
    batch_size: int = setting(16, "--batch-size", type=POSITIVE)
    warmup_epochs: Optional[int] = setting(None, "--warmup-epochs", type=NON_NEGATIVE,
                                           help="default: the official fraction")
    sampling_rate: int = setting(4, "--sampling-rate", type=POSITIVE,
                                 help="frame stride of training clips (default 4; 2 for SSv2)")
    clip_grad: Optional[float] = setting(None, "--clip-grad", type=POSITIVE_FLOAT,
                                         help="global gradient-norm clip")
    workers: int = setting(2, "--workers", type=POSITIVE, record=False,
                           help="data-loading threads")
    seed: int = setting(0, "--seed", type=int)
    dtype: Optional[str] = setting(None, "--mixed-precision", action="store_const",
                                   const="mixed_bfloat16",
                                   help="mixed_bfloat16 compute (float32 weights and head)")
    distribution: Optional[str] = setting(
        None, "--distribution", choices=list(DISTRIBUTIONS), record=False,
        help="several devices: data (each batch split over the local devices; jax, or "
        "tensorflow's MirroredStrategy) or fsdp (jax: weights, gradients and optimizer state "
        "sharded over a --mesh)")
    mesh: Optional[str] = setting(None, "--mesh", record=False,
                                  help="fsdp: batch x model devices, e.g. 2x4 (default: "
                                  "every device on the batch axis)")
    remat: bool = setting(False, "--remat", action="store_true", record=False,
                          help="recompute each transformer block in the backward pass: less "
                          "activation memory for about a third more compute, same result")
    accumulate: int = setting(1, "--accumulate", type=POSITIVE,
                              help="average the gradients of N batches into each update (the "
                              "update's batch, which the learning rate scales with, is N x "
                              "--batch-size; default 1)")
    coordinator: Optional[str] = setting(
        None, "--coordinator", metavar="HOST:PORT", record=False,
        help="several hosts: process 0's address (the same on every host); with "
        "--num-processes and --process-id (jax; automatic on TPU VM slices)")
    num_processes: Optional[int] = setting(None, "--num-processes", type=POSITIVE,
                                           record=False, help="several hosts: how many")
    process_id: Optional[int] = setting(None, "--process-id", type=int, record=False,
                                        help="several hosts: this one's, 0 to P-1")
    overwrite: bool = setting(False, "--overwrite", action="store_true", record=False,
                              help="OUT holds another run: remove its files and start this one")
    check_videos: bool = setting(True, "--skip-video-check", action="store_false",
                                 record=False, help="before training, check only that the "
                                 "listed videos exist (default: open each one)")

    def __post_init__(self):
        """Numbers are checked as the command line checks them, so a bad value is one line
        naming the setting, from Python too."""
        for field in dataclasses.fields(self):
            value, check = getattr(self, field.name), field.metadata["option"].get("type")
            if check is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            try:
                check(str(value))
            except Exception as e:
                raise ValueError(f"{field.name}: {e}.") from None

    @classmethod
    def of(cls, settings=None, **values):
        """`settings` (an instance, or None for the defaults) with `values` replacing its
        fields; an unknown name is a TypeError listing the known ones."""
        if settings is not None and type(settings) is not cls:
            raise TypeError(f"settings must be a {cls.__name__}; got {type(settings).__name__}.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TypeError(f"unknown {cls.__name__} setting(s) {', '.join(unknown)}; the "
                            f"settings are {', '.join(sorted(names))}.")
        return dataclasses.replace(settings or cls(), **values)

    def recorded(self):
        """The settings that change the trained model, as `run.json` records them."""
        out, model = {}, {}
        for field in dataclasses.fields(self):
            where, value = field.metadata["record"], getattr(self, field.name)
            if where is True:
                out[field.name] = value
            elif where == "model" and value is not None:
                model[field.name] = value
        if "model" in out:
            out["model"] = {**model, **out["model"]}
        return out

    @classmethod
    def add_arguments(cls, parser):
        """One option per field that has flags: this class's own fields first, then the
        shared ones, each stored under its field's name."""
        inherited = {f.name for base in cls.__mro__[1:] if dataclasses.is_dataclass(base)
                     for f in dataclasses.fields(base)}
        own = [f for f in dataclasses.fields(cls) if f.name not in inherited]
        shared = [f for f in dataclasses.fields(cls) if f.name in inherited]
        for field in own + shared:
            flags = field.metadata["flags"]
            if flags:
                option = dict(field.metadata["option"])
                if option.get("action") is None and "choices" not in option:  # as the option
                    option.setdefault("metavar", flags[0].lstrip("-").upper().replace("-", "_"))
                default = field.metadata.get("command_default", field.default)
                parser.add_argument(*flags, dest=field.name, default=default, **option)

    @classmethod
    def from_arguments(cls, args, **values):
        """The settings a parsed command line gives (`values` replace fields)."""
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                 if f.metadata["flags"] and hasattr(args, f.name)}
        return cls.of(**{**given, **values})


@dataclasses.dataclass(frozen=True)
class PretrainSettings(TrainingSettings):
    """Self-supervised pretraining. `architecture`: a name of `presets.ARCHITECTURES`
    ("S16PT", "B16PT", ...), "tiny" (the demo size), or None with the model given by `model`
    (VideoMAEPretrainer arguments). `decoder_mask_ratio` > 0 is VideoMAE V2 dual masking
    (V2 uses 0.5): the decoder reconstructs only a running-cell share of the tokens.
    `norm_pix_loss` None is the model's default (True: per-patch normalised targets)."""

    architecture: Optional[str] = setting(
        None, "--arch", command_default="B16PT",
        help="S16PT, B16PT, L16PT, H16PT, g14PT or tiny (default B16PT)")
    base_lr: float = setting(1.5e-4, "--lr", type=POSITIVE_FLOAT, help="base lr per 256 clips")
    mask_ratio: float = setting(0.9, "--mask-ratio", type=fraction(0.0, 1.0, low_inclusive=False))
    norm_pix_loss: Optional[bool] = setting(
        None, "--pixel-loss", action="store_false", command_default=True, record="model",
        help="plain [0, 1] pixel targets instead of per-patch normalised ones")
    decoder_mask_ratio: float = setting(
        0.0, "--decoder-mask-ratio", type=RATIO,
        help="VideoMAE V2 dual masking: decode only a running-cell share of the tokens (V2: "
        "0.5; default 0, VideoMAE V1)")
    num_frames: int = setting(16, "--num-frames", type=POSITIVE)
    image_size: int = setting(224, "--image-size", type=POSITIVE)
    model: dict = setting({})


@dataclasses.dataclass(frozen=True)
class FinetuneSettings(TrainingSettings):
    """Supervised fine-tuning. `num_classes` defaults to the count of `labels` (class
    names: a file, one per line, or a list) or of the train list's names; `val_list` gives
    the final top-1 (one centre clip per video) and, with `test_views` ("5x3": the official
    Kinetics test), the multi-view top-1 too. `mixup` / `cutmix` are the Beta alphas of
    `VideoMixup` (official 0.8 / 1.0; 0 = off, the Python default); `scale` the random
    resized crop's area range."""

    num_classes: Optional[int] = setting(
        None, "--num-classes", type=POSITIVE,
        help="classes of the head (default: from --labels, or from the train list when its "
        "labels are class names)")
    labels: object = setting(None, "--labels", record=False,
                             help="class names, one per line in head order; saved in the "
                             "model (predict shows them). Lists may then give names as labels")
    val_list: Optional[str] = setting(None, "--val-list", record=False,
                                      help="annotation file for the final top-1")
    test_views: object = setting(None, "--test-views", type=views, record=False,
                                 help="also evaluate --val-list with the multi-view test, clips "
                                 "x crops (official Kinetics: 5x3)")
    base_lr: float = setting(1e-3, "--lr", type=POSITIVE_FLOAT, help="base lr per 256 clips")
    layer_decay: float = setting(0.75, "--layer-decay", type=fraction(0.0, 1.0, True, False))
    drop_path_rate: float = setting(0.1, "--drop-path", type=RATIO)
    label_smoothing: float = setting(0.1, "--label-smoothing", type=RATIO)
    mixup: float = setting(0.0, "--mixup", type=at_least(0.0, float), command_default=0.8,
                           help="mixup Beta alpha (official 0.8; 0 turns it off)")
    cutmix: float = setting(0.0, "--cutmix", type=at_least(0.0, float), command_default=1.0,
                            help="cutmix Beta alpha, same box in every frame (official 1.0; "
                            "0 off)")
    scale: tuple = setting((0.08, 1.0), "--min-scale", type=_lower_end, metavar="MIN_SCALE",
                           help="smallest random-resized-crop area (default 0.08)")
    flip: bool = setting(True, "--no-flip", action="store_false",
                         help="no horizontal flip (SSv2, direction-dependent classes)")
    epochs: int = setting(50, "--epochs", type=POSITIVE, command_default=100)
