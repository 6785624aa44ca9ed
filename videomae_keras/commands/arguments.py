"""What the commands share: argument types that check values as they are parsed, the weights
and view options, and running a step over each video with one line per failure."""

import argparse
import sys

from videomae_keras.options import (  # noqa: F401 (the value types, re-exported)
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_FLOAT,
    RATIO,
    at_least,
    fraction,
    views,
)

EXIT_VERIFY_FAILED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM gives 143

def image_size(text):
    try:
        parts = [int(p) for p in text.lower().replace("x", ",").split(",") if p]
    except ValueError:
        raise argparse.ArgumentTypeError("give one size (224) or height,width (224,320)") from None
    if any(p < 1 for p in parts):
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text}")
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return tuple(parts)
    raise argparse.ArgumentTypeError("give one size (224) or height,width (224,320)")


def formats(text):
    from videomae_keras.options import FORMATS

    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(
            f"unknown format(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}"
        )
    return formats


DEFAULT_CLASSIFIER = "MCG-NJU/videomae-base-finetuned-kinetics"

DEFAULT_PRETRAINER = "MCG-NJU/videomae-base"


def add_weights_arguments(parser, default):
    parser.add_argument(
        "--weights",
        default=default,
        help="official .pth, transformers folder, .safetensors/.bin, .keras or .weights.h5 "
        f"file, or a registered name (default: {default}; downloaded once, then cached)",
    )
    parser.add_argument("--arch", help="architecture of a .weights.h5 file, e.g. B16FT, S16PT")
    parser.add_argument("--num-classes", type=NON_NEGATIVE,
                        help="classes of a .weights.h5 classifier (default 400)")
    parser.add_argument("--decoder", default="auto", choices=["auto", "decord", "pyav", "opencv"],
                        help="video decoder (auto: decord, then PyAV, then OpenCV)")
    parser.add_argument("--jit", choices=["auto", "on", "off"], default="auto",
                        help="compiled model calls: XLA on jax/tensorflow, torch.compile on "
                        "torch (auto: on except on torch, where compiling costs more than "
                        "a few clips save)")
    parser.add_argument("--int8", action="store_true",
                        help="int8 weights (Keras quantize): faster on some backends, "
                        "slightly different outputs (see bench/quantize.py)")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="bfloat16 compute (for GPUs and TPUs; slower on most CPUs)")
    add_flags(parser, "quiet")


FLAGS = {
    "overwrite": "replace existing output files",
    "json": "print the result as JSON",
    "quiet": "no progress output",
}


def add_flags(parser, *names):
    """The store-true options several commands share (--overwrite, --json, --quiet)."""
    for name in names:
        parser.add_argument(f"--{name}", action="store_true", help=FLAGS[name])


def add_view_arguments(parser, views_help):
    parser.add_argument("--views", type=views, help=views_help)
    parser.add_argument("--sampling", choices=["dense", "segment", "uniform"],
                        help="frame sampling: dense (Kinetics: stride --sampling-rate), "
                        "segment (SSv2), uniform")
    parser.add_argument("--sampling-rate", type=POSITIVE, default=4,
                        help="frame stride of dense sampling (default 4)")
    parser.add_argument("--batch-size", type=POSITIVE, default=4, help="views per model call")


def add_picture_arguments(parser, default_weights, animated="GIF"):
    """What the commands that picture one clip share (reconstruct, explain): VIDEO, --out,
    the weights, the clip's --sampling-rate, and --fps and --no-gif for the animation."""
    parser.add_argument("video", metavar="VIDEO", help="a video file")
    parser.add_argument("--out", default=".", help="output folder (default: here)")
    add_weights_arguments(parser, default_weights)
    parser.add_argument("--sampling-rate", type=POSITIVE, default=4,
                        help="frame stride of the clip (default 4)")
    parser.add_argument("--fps", type=POSITIVE_FLOAT, default=4.0,
                        help=f"{animated} frames per second")
    parser.add_argument("--no-gif", action="store_true", help="no animated GIF")


def registered_labels(model, label_map):
    """The labels argument for a model loaded by `load_weights`: None (the model's own class
    names, or the shipped map by head size), the registered checkpoint's shipped label map,
    or False (indices) for a label space the package does not ship (e.g. Kinetics-710)."""
    from videomae_keras import presets

    if not label_map or getattr(model, "class_names", None):
        return None
    try:
        presets.labels(label_map)
    except KeyError:
        return False
    return label_map


def add_window_arguments(parser):
    """Sliding windows over the whole video (features and predict --over-time)."""
    group = parser.add_argument_group(
        "windows over time", "one clip per sliding window of sampled frames (every "
        "--sampling-rate-th frame), decoded as a stream")
    group.add_argument("--window", type=POSITIVE, metavar="FRAMES",
                       help="window length in sampled frames (default: the model's clip)")
    group.add_argument("--stride", type=POSITIVE, metavar="FRAMES",
                       help="sampled frames between window starts (default: half a window)")
    group.add_argument("--window-seconds", type=POSITIVE_FLOAT, metavar="S",
                       help="window length in seconds instead")
    group.add_argument("--stride-seconds", type=POSITIVE_FLOAT, metavar="S",
                       help="seconds between window starts instead")


def window_options(args):
    """The window arguments given, as keywords of features_over_time / predict_over_time;
    {} when none is."""
    names = ("window", "stride", "window_seconds", "stride_seconds")
    given = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    if given.get("window") and given.get("window_seconds"):
        raise UsageError("give --window or --window-seconds, not both")
    if given.get("stride") and given.get("stride_seconds"):
        raise UsageError("give --stride or --stride-seconds, not both")
    return given


class UsageError(Exception):
    pass


def load_weights(args, stages, **overrides):
    from videomae_keras import presets
    from videomae_keras.convert import from_pretrained
    from videomae_keras.inference import optimize_for_inference

    kwargs = dict(overrides)
    if getattr(args, "mixed_precision", False):
        kwargs["dtype"] = "mixed_bfloat16"
    if args.arch:
        kwargs["architecture"] = args.arch
        if args.num_classes is not None:
            kwargs["num_classes"] = args.num_classes
    elif args.num_classes is not None:
        raise UsageError("--num-classes goes with --arch (for .weights.h5 files)")
    if str(args.weights).endswith(".keras") and kwargs:
        # a whole saved model: rebuilt with the changed arguments around its weights
        from videomae_keras.models.saving import rebuild

        model = stages.run(f"loading {args.weights}", lambda: rebuild(
            from_pretrained(args.weights), **kwargs))
    else:
        model = stages.run(f"loading {args.weights}", from_pretrained, args.weights,
                           progress=not args.quiet, **kwargs)
    jit = {"auto": "auto", "on": True, "off": False}[getattr(args, "jit", "auto")]
    optimize_for_inference(model, jit_compile=jit, int8=getattr(args, "int8", False))
    label_map = None
    if presets.is_registered(args.weights):
        label_map = presets.checkpoint(args.weights).get("label_map")
    return model, label_map


def check_videos(paths):
    from videomae_keras.video.io import _check_file

    for path in paths:
        _check_file(path)


def each_video(command, videos, stages, describe, function):
    """Yields (path, result) with `function(path)` run as one stage per video, one at a time.
    A video that cannot be read prints one error line and yields its VideoError instead."""
    from videomae_keras.video.io import VideoError

    for path in videos:
        try:
            yield path, stages.run(f"{describe} {path}", function, path)
        except VideoError as e:
            print(f"videomae-keras {command}: error: {e}", file=sys.stderr)
            yield path, e
