"""The `videomae-keras` command line.

Parsing needs no Keras (the console command starts through `videomae_keras_cli`, so `--help`
answers at once); `main` loads Keras and the package only once a command runs, quietly:
TensorFlow's and the video decoders' own start-up and error chatter is kept out of the
terminal here, at the entry point, never by the library itself.
"""

import argparse
import contextlib
import json
import logging
import os
import signal
import sys

EXIT_VERIFY_FAILED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM gives 143


def _at_least(minimum, kind=int):
    """An argparse type: a number of `kind` no smaller than `minimum`."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value

    return parse


def _fraction(low=0.0, high=1.0, high_inclusive=False, low_inclusive=True):
    """An argparse type: a number in [low, high) (or with the given ends)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        above = value >= low if low_inclusive else value > low
        below = value <= high if high_inclusive else value < high
        if not (above and below):
            interval = ("[" if low_inclusive else "(") + f"{low:g}, {high:g}" + (
                "]" if high_inclusive else ")")
            raise argparse.ArgumentTypeError(f"must lie in {interval}, got {text}")
        return value

    return parse


POSITIVE = _at_least(1)
NON_NEGATIVE = _at_least(0)
POSITIVE_FLOAT = _fraction(0.0, float("inf"), low_inclusive=False)
RATIO = _fraction(0.0, 1.0)


def _image_size(text):
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


def _formats(text):
    from videomae_keras.options import FORMATS

    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(
            f"unknown format(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}"
        )
    return formats


def add_port_arguments(parser):
    parser.add_argument(
        "source",
        nargs="?",
        help="official .pth, transformers folder, .safetensors/.bin file, or a registered "
        "name (see --list)",
    )
    parser.add_argument("--out", help="output folder (created if needed)")
    parser.add_argument(
        "--format",
        type=_formats,
        default=["keras"],
        help="comma-separated: keras, h5 (.weights.h5), savedmodel (TF Serving), onnx "
        "(default: keras)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="compare with the PyTorch reference (transformers' VideoMAE) on a fixed input, "
        "then load every written file back and compare; exit 1 above --tolerance",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--name", help="base name of the outputs (default: from the source)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest max |diff| accepted by --verify (default 1e-4)")
    parser.add_argument("--task", choices=["classifier", "pretrainer", "backbone"],
                        help="build this model instead of the checkpoint's own")
    parser.add_argument("--num-frames", type=POSITIVE, help="frames per clip (default 16)")
    parser.add_argument("--image-size", type=_image_size, help="224 or height,width")
    parser.add_argument("--num-heads", type=POSITIVE,
                        help="attention heads, for widths the official table does not know")
    parser.add_argument("--mask-ratio", type=RATIO, help="pretrainers: tube mask ratio (0.9)")
    parser.add_argument("--num-masked", type=POSITIVE, help="pretrainers: masked tokens per clip")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--labels", help="class names of a classifier, one per line in head "
                        "order, saved in the .keras file (predict shows them)")
    parser.add_argument("--list", action="store_true", help="list the registered checkpoints")


def run_port(args):
    from videomae_keras import presets

    if args.list:
        from videomae_keras.checkpoints.cache import recorded_digest

        print(f"{'name':<48} {'backbone':<9} {'task':<10} {'dataset':<24} {'top-1':<6} sha256")
        for name in presets.names():
            info = presets.checkpoint(name)
            accuracy = str(info["top1"]) if info.get("top1") is not None else "-"
            print(f"{name:<48} {info['architecture']:<9} {info['task']:<10} "
                  f"{info['dataset']:<24} {accuracy:<6} {recorded_digest(name)}")
        print("sha256: no release publishes one; the first download records it in the cache "
              "and every later use checks the file against it.")
        return 0
    if not args.source or not args.out:
        raise _UsageError("give a SOURCE and --out DIR (or --list)")
    from videomae_keras.checkpoints.porting import port

    overrides = {
        key: value
        for key, value in (
            ("num_frames", args.num_frames),
            ("image_size", args.image_size),
            ("num_heads", args.num_heads),
            ("mask_ratio", args.mask_ratio),
            ("num_masked", args.num_masked),
        )
        if value is not None
    }
    result = port(
        args.source,
        args.out,
        formats=args.format,
        verify=args.verify,
        overwrite=args.overwrite,
        name=args.name,
        tolerance=args.tolerance,
        task=args.task,
        progress=not args.quiet,
        labels=args.labels,
        **overrides,
    )
    if args.json:
        print(json.dumps({
            "name": result.name, "task": result.task, "architecture": result.description,
            "parameters": result.parameters, "gflops": round(result.gflops, 2),
            "files": result.files, "reference": result.reference,
            "max_abs_diff": result.differences, "notes": result.notes,
        }, indent=2))
    else:
        print(result.summary())
    return 0


DEFAULT_CLASSIFIER = "MCG-NJU/videomae-base-finetuned-kinetics"
DEFAULT_PRETRAINER = "MCG-NJU/videomae-base"


def _views(text):
    from videomae_keras.options import parse_views

    try:
        return parse_views(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


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


_FLAGS = {
    "overwrite": "replace existing output files",
    "json": "print the result as JSON",
    "quiet": "no progress output",
}


def add_flags(parser, *names):
    """The store-true options several commands share (--overwrite, --json, --quiet)."""
    for name in names:
        parser.add_argument(f"--{name}", action="store_true", help=_FLAGS[name])


def add_view_arguments(parser, views_help):
    parser.add_argument("--views", type=_views, help=views_help)
    parser.add_argument("--sampling", choices=["dense", "segment", "uniform"],
                        help="frame sampling: dense (Kinetics: stride --sampling-rate), "
                        "segment (SSv2), uniform")
    parser.add_argument("--sampling-rate", type=POSITIVE, default=4,
                        help="frame stride of dense sampling (default 4)")
    parser.add_argument("--batch-size", type=POSITIVE, default=4, help="views per model call")


def _load_weights(args, stages, **overrides):
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
        raise _UsageError("--num-classes goes with --arch (for .weights.h5 files)")
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


def _check_videos(paths):
    from videomae_keras.video.io import _check_file

    for path in paths:
        _check_file(path)


def _each_video(command, videos, stages, describe, function):
    """Yields (path, result) with `function(path)` run as one stage per video, one at a time.
    A video that cannot be read prints one error line and yields its VideoError instead."""
    from videomae_keras.video.io import VideoError

    for path in videos:
        try:
            yield path, stages.run(f"{describe} {path}", function, path)
        except VideoError as e:
            print(f"videomae-keras {command}: error: {e}", file=sys.stderr)
            yield path, e


def run_predict(args):
    from videomae_keras import presets
    from videomae_keras.inference import predict_video
    from videomae_keras.progress import Stages

    _check_videos(args.videos)
    stages = Stages(1 + len(args.videos), enabled=not args.quiet)
    model, label_map = _load_weights(args, stages)
    labels = args.labels
    if labels is None and label_map and not getattr(model, "class_names", None):
        try:
            presets.labels(label_map)
            labels = label_map
        except KeyError:
            labels = False  # a label space we do not ship (e.g. Kinetics-710): indices
    outcomes = _each_video(
        "predict", args.videos, stages, "predicting",
        lambda path: predict_video(
            model, path, views=args.views, top_k=args.top_k, labels=labels,
            sampling=args.sampling, sampling_rate=args.sampling_rate,
            batch_size=args.batch_size, backend=args.decoder, progress=stages,
        ),
    )
    results, failures = [], 0
    for path, prediction in outcomes:
        if isinstance(prediction, Exception):
            failures += 1
            results.append({"video": path, "error": str(prediction)})
            continue
        results.append(prediction.to_dict())
        if not args.json:
            print(prediction)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    return EXIT_ERROR if failures else 0


def _features_path(out, video, many):
    stem = os.path.splitext(os.path.basename(video))[0]
    if many or os.path.isdir(out) or not out.endswith(".npz"):
        return os.path.join(out, f"{stem}.features.npz")
    return out


def run_features(args):
    import numpy as np

    from videomae_keras.atomic import atomic_output, check_writable
    from videomae_keras.inference import extract_features
    from videomae_keras.progress import Stages

    _check_videos(args.videos)
    many = len(args.videos) > 1
    targets = [_features_path(args.out, v, many) for v in args.videos]
    if len(set(targets)) != len(targets):
        raise _UsageError("two videos share a file name; give them separate --out folders")
    for target in targets:
        check_writable(target, args.overwrite)
    stages = Stages(1 + len(args.videos), enabled=not args.quiet)
    model, _ = _load_weights(args, stages)
    outcomes = _each_video(
        "features", args.videos, stages, "features of",
        lambda path: extract_features(
            model, path, views=args.views or (1, 1), tokens=not args.no_tokens,
            sampling=args.sampling or "dense", sampling_rate=args.sampling_rate,
            batch_size=args.batch_size, backend=args.decoder, progress=stages,
        ),
    )
    summary, failures = [], 0
    for (path, features), target in zip(outcomes, targets):
        if isinstance(features, Exception):
            failures += 1
            continue
        arrays = {"pooled": features.pooled, "embedding": features.embedding,
                  "frame_indices": features.frame_indices,
                  "views": np.asarray(features.views)}
        if features.tokens is not None:
            arrays["tokens"] = features.tokens
        with atomic_output(target, overwrite=args.overwrite, suffix=".npz") as temp:
            np.savez(temp, **arrays)
        item = {"video": path, "file": target, "pooled": list(features.pooled.shape),
                "tokens": list(features.tokens.shape) if features.tokens is not None else None}
        summary.append(item)
        if not args.json:
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items()
                               if k in ("pooled", "tokens"))
            print(f"{path} -> {target} ({shapes})")
    if args.json:
        print(json.dumps(summary, indent=2))
    return EXIT_ERROR if failures else 0


def run_reconstruct(args):
    from videomae_keras.atomic import check_writable
    from videomae_keras.progress import Stages
    from videomae_keras.reconstruction import reconstruct_video

    _check_videos([args.video])
    stem = os.path.splitext(os.path.basename(args.video))[0]
    png = os.path.join(args.out, f"{stem}.reconstruction.png")
    gif = os.path.join(args.out, f"{stem}.reconstruction.gif")
    check_writable(png, args.overwrite)
    if not args.no_gif:
        check_writable(gif, args.overwrite)
    stages = Stages(3, enabled=not args.quiet)
    overrides = {}
    keras_file = str(args.weights).endswith(".keras")
    if args.mask_ratio is not None and not keras_file:
        overrides["mask_ratio"] = args.mask_ratio
    if args.mask_ratio is not None and keras_file:  # a saved model: rebuilt at that ratio
        overrides.update(mask_ratio=args.mask_ratio, num_masked=None)
    model, _ = _load_weights(args, stages, **overrides)
    result = stages.run(
        f"reconstructing {args.video}", reconstruct_video, model, args.video, seed=args.seed,
        sampling_rate=args.sampling_rate, backend=args.decoder,
    )
    written = []

    def save():
        written.append(result.save_png(png, overwrite=args.overwrite))
        if not args.no_gif:
            written.append(result.save_gif(gif, overwrite=args.overwrite, fps=args.fps))

    stages.run("writing pictures", save)
    masked = int(result.mask.sum())
    report = {"video": args.video, "files": written, "masked_tokens": masked,
              "tokens": int(result.mask.size), "loss": result.loss, "target": result.target}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.video}: {masked} of {result.mask.size} tokens masked; {result.target} "
              f"MSE on the masked patches {result.loss:.4f}")
        for path in written:
            print(f"wrote {path}")
        print("(rows: original | masked | reconstruction; masked patches are un-normalised "
              "with the original patch's mean and std, as the official visualisation)")
    return 0


def run_make_synthetic(args):
    from videomae_keras.data import make_synthetic_dataset
    from videomae_keras.progress import Stages

    stages = Stages(1, enabled=not args.quiet)
    out = stages.run("writing synthetic videos", make_synthetic_dataset, args.out,
                     train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                     frames=args.frames, height=args.height, width=args.width, seed=args.seed,
                     progress=stages)
    for key, path in out.items():
        print(f"{key}: {path}")
    return 0


def _training_common(parser):
    parser.add_argument("--out", required=True, help="run folder (logs, backup, final model)")
    parser.add_argument("--epochs", type=POSITIVE, default=100)
    parser.add_argument("--batch-size", type=POSITIVE, default=16)
    parser.add_argument("--warmup-epochs", type=NON_NEGATIVE,
                        help="default: the official fraction")
    parser.add_argument("--sampling-rate", type=POSITIVE, default=4,
                        help="frame stride of training clips (default 4; 2 for SSv2)")
    parser.add_argument("--clip-grad", type=POSITIVE_FLOAT, help="global gradient-norm clip")
    parser.add_argument("--workers", type=POSITIVE, default=2, help="data-loading threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixed-precision", action="store_true",
                        help="mixed_bfloat16 compute (float32 weights and head)")
    parser.add_argument("--distribution", choices=["data", "fsdp"],
                        help="several devices: data (each batch split over the local devices; "
                        "jax, or tensorflow's MirroredStrategy) or fsdp (jax: weights, "
                        "gradients and optimizer state sharded over a --mesh)")
    parser.add_argument("--mesh", help="fsdp: batch x model devices, e.g. 2x4 (default: "
                        "every device on the batch axis)")
    parser.add_argument("--data-parallel", action="store_true",
                        help="the same as --distribution data")
    parser.add_argument("--remat", action="store_true",
                        help="recompute each transformer block in the backward pass: less "
                        "activation memory for about a third more compute, same result")
    parser.add_argument("--accumulate", type=POSITIVE, default=1,
                        help="average the gradients of N batches into each update (the "
                        "update's batch, which the learning rate scales with, is N x "
                        "--batch-size; default 1)")
    parser.add_argument("--coordinator", metavar="HOST:PORT",
                        help="several hosts: process 0's address (the same on every host); "
                        "with --num-processes and --process-id (jax; automatic on TPU VM "
                        "slices)")
    parser.add_argument("--num-processes", type=POSITIVE, help="several hosts: how many")
    parser.add_argument("--process-id", type=int, help="several hosts: this one's, 0 to P-1")
    parser.add_argument("--overwrite", action="store_true",
                        help="OUT holds another run: remove its files and start this one")
    parser.add_argument("--skip-video-check", action="store_true",
                        help="before training, check only that the listed videos exist "
                        "(default: open each one)")
    add_flags(parser, "quiet")
    parser.set_defaults(check=_distribution_arguments)


def _distribution_arguments(args):
    """distribution, mesh and accumulate for pretrain/finetune (--data-parallel: data)."""
    if args.data_parallel and args.distribution not in (None, "data"):
        raise _UsageError("--data-parallel is --distribution data; give one of them")
    distribution = args.distribution or ("data" if args.data_parallel else None)
    if args.mesh and distribution != "fsdp":
        raise _UsageError("--mesh goes with --distribution fsdp")
    if args.mesh:
        from videomae_keras.options import parse_mesh

        try:
            parse_mesh(args.mesh)
        except ValueError as e:
            raise _UsageError(f"--mesh: {e}") from None
    hosts = (args.coordinator, args.num_processes, args.process_id)
    if any(v is not None for v in hosts) and not all(v is not None for v in hosts):
        raise _UsageError("--coordinator, --num-processes and --process-id go together")
    if args.num_processes and not 0 <= args.process_id < args.num_processes:
        raise _UsageError(f"--process-id must lie in [0, {args.num_processes})")
    if args.num_processes and not distribution:
        raise _UsageError("several processes train with --distribution data or fsdp")
    return {"distribution": distribution, "mesh": args.mesh, "accumulate": args.accumulate,
            "coordinator": args.coordinator, "num_processes": args.num_processes,
            "process_id": args.process_id}


def run_pretrain(args):
    from videomae_keras.training.run import pretrain

    model = pretrain(
        args.train_list, args.out, architecture=args.arch, epochs=args.epochs,
        batch_size=args.batch_size, base_lr=args.lr, warmup_epochs=args.warmup_epochs,
        mask_ratio=args.mask_ratio, num_frames=args.num_frames, image_size=args.image_size,
        sampling_rate=args.sampling_rate, clip_grad=args.clip_grad, workers=args.workers,
        seed=args.seed, dtype="mixed_bfloat16" if args.mixed_precision else None,
        progress=not args.quiet, norm_pix_loss=not args.pixel_loss,
        decoder_mask_ratio=args.decoder_mask_ratio, overwrite=args.overwrite,
        check_videos=not args.skip_video_check, remat=args.remat,
        **_distribution_arguments(args),
    )
    if model.run_state.action == "finished":
        return 0  # said so already; nothing was touched
    print(f"wrote {os.path.join(args.out, 'pretrained.keras')} "
          f"({model.count_params() / 1e6:.2f}M parameters); log: "
          f"{os.path.join(args.out, 'log.csv')}")
    return 0


def run_finetune(args):
    from videomae_keras.training.run import finetune

    model, results = finetune(
        args.train_list, args.out, args.pretrained, args.num_classes, val_list=args.val_list,
        epochs=args.epochs, batch_size=args.batch_size, base_lr=args.lr,
        layer_decay=args.layer_decay, warmup_epochs=args.warmup_epochs,
        drop_path_rate=args.drop_path, label_smoothing=args.label_smoothing,
        flip=not args.no_flip, scale=(args.min_scale, 1.0), sampling_rate=args.sampling_rate,
        clip_grad=args.clip_grad, workers=args.workers, seed=args.seed,
        dtype="mixed_bfloat16" if args.mixed_precision else None, progress=not args.quiet,
        mixup=args.mixup, cutmix=args.cutmix, test_views=args.test_views,
        labels=args.labels, overwrite=args.overwrite, check_videos=not args.skip_video_check,
        remat=args.remat, **_distribution_arguments(args),
    )
    accuracy = results.get("val_top1")
    views = results.get("val_top1_views")
    verb = {"finished": "kept", "evaluate": "evaluated"}.get(model.run_state.action, "wrote")
    print(f"{verb} {os.path.join(args.out, 'finetuned.keras')}"
          + (f"; validation top-1 {accuracy:.3f}" if accuracy is not None else "")
          + (f" (one centre clip), {views:.3f} ({results['test_views']} views)"
             if views is not None else ""))
    return 0


def run_demo(args):
    from videomae_keras.demo import run_demo as demo

    return demo(args.out, overwrite=args.overwrite, quiet=args.quiet)


class _UsageError(Exception):
    pass


def build_parser():
    parser = argparse.ArgumentParser(
        prog="videomae-keras",
        description="VideoMAE in Keras 3: classify videos, extract features, picture "
        "reconstructions, and port, check and export checkpoints.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    port = commands.add_parser(
        "port",
        help="convert a PyTorch VideoMAE checkpoint to .keras, .weights.h5, SavedModel, ONNX",
        description="Convert an official or transformers VideoMAE checkpoint (or a registered "
        "name) into Keras files, a TF Serving SavedModel and ONNX, optionally verified against "
        "the PyTorch reference. Outputs are written atomically; existing ones are kept unless "
        "--overwrite.",
    )
    add_port_arguments(port)
    port.set_defaults(run=run_port)

    predict = commands.add_parser(
        "predict",
        help="classify videos (official multi-view test, softmax averaged over views)",
        description="Classify video files with a fine-tuned VideoMAE. Clips are sampled as the "
        "official test does (dense 16x5x3 for Kinetics-style heads, segment 16x2x3 for "
        "Something-Something v2), three crops along the long side, and the softmax "
        "probabilities are averaged over the views.",
    )
    predict.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    add_weights_arguments(predict, DEFAULT_CLASSIFIER)
    add_view_arguments(predict, "clips x crops, e.g. 5x3 (default: 5x3 dense, 2x3 segment)")
    predict.add_argument("--top-k", type=POSITIVE, default=5, help="classes to show (default 5)")
    predict.add_argument("--labels", help="class names: a text file (one per line) or a "
                         "shipped map (kinetics400, ssv2, ucf101); default by head size")
    add_flags(predict, "json")
    predict.set_defaults(run=run_predict)

    features = commands.add_parser(
        "features",
        help="save pooled and token features of videos (.npz)",
        description="Run the encoder over views of each video and save pooled (views, D), "
        "embedding (D,: pooled averaged over views) and tokens (views, N, D) as .npz.",
    )
    features.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    features.add_argument("--out", required=True,
                          help="an .npz file (one video) or a folder (NAME.features.npz)")
    add_weights_arguments(features, DEFAULT_CLASSIFIER)
    add_view_arguments(features, "clips x crops (default 1x1: centre clip, centre crop)")
    features.add_argument("--no-tokens", action="store_true", help="save pooled features only")
    add_flags(features, "overwrite", "json")
    features.set_defaults(run=run_features)

    reconstruct = commands.add_parser(
        "reconstruct",
        help="picture a pretraining model's reconstruction of a masked clip (PNG + GIF)",
        description="Mask the centre clip of a video with tube masking, reconstruct it with a "
        "pretraining model and write original | masked | reconstruction as a PNG grid and an "
        "animated GIF. Masked patches are un-normalised with the original patch's mean and "
        "std, as the official visualisation does.",
    )
    reconstruct.add_argument("video", metavar="VIDEO", help="a video file")
    reconstruct.add_argument("--out", default=".", help="output folder (default: here)")
    add_weights_arguments(reconstruct, DEFAULT_PRETRAINER)
    reconstruct.add_argument("--mask-ratio", type=_fraction(0.0, 1.0, low_inclusive=False),
                             help="tube mask ratio (default: the checkpoint's, 0.9)")
    reconstruct.add_argument("--seed", type=int, default=0, help="mask seed (default 0)")
    reconstruct.add_argument("--sampling-rate", type=POSITIVE, default=4,
                             help="frame stride of the clip (default 4)")
    reconstruct.add_argument("--fps", type=POSITIVE_FLOAT, default=4.0,
                             help="GIF frames per second")
    reconstruct.add_argument("--no-gif", action="store_true", help="write the PNG only")
    add_flags(reconstruct, "overwrite", "json")
    reconstruct.set_defaults(run=run_reconstruct)

    demo = commands.add_parser(
        "demo",
        help="offline demo on the shipped tiny models: predict a sample clip, draw a "
        "reconstruction",
        description="Runs the small VideoMAE trained in this project on synthetic moving-shape "
        "videos (shipped in the package, no download): classifies the shipped sample clip and "
        "writes a reconstruction picture from the shipped pretraining model.",
    )
    demo.add_argument("--out", default="videomae-demo",
                      help="folder for the pictures (default: ./videomae-demo)")
    add_flags(demo, "overwrite", "quiet")
    demo.set_defaults(run=run_demo)

    pretrain = commands.add_parser(
        "pretrain",
        help="self-supervised pretraining (tube masking, norm-pix MSE) with fit()",
        description="Pretrain a VideoMAE on the videos of an annotation list ('path label' "
        "per line; labels unused): AdamW (0.9, 0.95), weight decay 0.05 (not on biases and "
        "norms), lr = --lr * batch / 256 with warm-up and cosine decay. Logs go to OUT/log.csv "
        "and OUT/tensorboard. Rerunning an interrupted command resumes it from its last "
        "backup; a finished run is left as it is; another run in OUT is refused unless "
        "--overwrite.",
    )
    pretrain.add_argument("train_list", help="annotation file: 'path label' per line")
    pretrain.add_argument("--arch", default="B16PT",
                          help="S16PT, B16PT, L16PT, H16PT, g14PT or tiny (default B16PT)")
    pretrain.add_argument("--lr", type=POSITIVE_FLOAT, default=1.5e-4,
                          help="base lr per 256 clips")
    pretrain.add_argument("--mask-ratio", type=_fraction(0.0, 1.0, low_inclusive=False),
                          default=0.9)
    pretrain.add_argument("--pixel-loss", action="store_true",
                          help="plain [0, 1] pixel targets instead of per-patch normalised ones")
    pretrain.add_argument("--decoder-mask-ratio", type=RATIO, default=0.0,
                          help="VideoMAE V2 dual masking: decode only a running-cell share "
                          "of the tokens (V2: 0.5; default 0, VideoMAE V1)")
    pretrain.add_argument("--num-frames", type=POSITIVE, default=16)
    pretrain.add_argument("--image-size", type=POSITIVE, default=224)
    _training_common(pretrain)
    pretrain.set_defaults(run=run_pretrain)

    finetune = commands.add_parser(
        "finetune",
        help="supervised fine-tuning from a pretrained encoder with fit()",
        description="Fine-tune a classifier whose encoder comes from a pretraining model "
        "(.keras from `pretrain`, or any from_pretrained source); fc_norm and the head start "
        "fresh. AdamW (0.9, 0.999), layer-wise lr decay, label smoothing, drop path, random "
        "resized crop and flip, warm-up and cosine decay; top-1 on --val-list at the end.",
    )
    finetune.add_argument("train_list", help="annotation file: 'path label' per line")
    finetune.add_argument("--pretrained", required=True,
                          help="pretrained model: .keras file or any from_pretrained source")
    finetune.add_argument("--num-classes", type=POSITIVE,
                          help="classes of the head (default: from --labels, or from the "
                          "train list when its labels are class names)")
    finetune.add_argument("--labels",
                          help="class names, one per line in head order; saved in the model "
                          "(predict shows them). Lists may then give names as labels")
    finetune.add_argument("--val-list", help="annotation file for the final top-1")
    finetune.add_argument("--test-views", type=_views,
                          help="also evaluate --val-list with the multi-view test, clips x "
                          "crops (official Kinetics: 5x3)")
    finetune.add_argument("--lr", type=POSITIVE_FLOAT, default=1e-3,
                          help="base lr per 256 clips")
    finetune.add_argument("--layer-decay", type=_fraction(0.0, 1.0, True, False), default=0.75)
    finetune.add_argument("--drop-path", type=RATIO, default=0.1)
    finetune.add_argument("--label-smoothing", type=RATIO, default=0.1)
    finetune.add_argument("--mixup", type=_at_least(0.0, float), default=0.8,
                          help="mixup Beta alpha (official 0.8; 0 turns it off)")
    finetune.add_argument("--cutmix", type=_at_least(0.0, float), default=1.0,
                          help="cutmix Beta alpha, same box in every frame (official 1.0; 0 off)")
    finetune.add_argument("--min-scale", type=_fraction(0.0, 1.0, True, False), default=0.08,
                          help="smallest random-resized-crop area (default 0.08)")
    finetune.add_argument("--no-flip", action="store_true",
                          help="no horizontal flip (SSv2, direction-dependent classes)")
    _training_common(finetune)
    finetune.set_defaults(run=run_finetune)

    synthetic = commands.add_parser(
        "make-synthetic",
        help="write the synthetic moving-shapes data set (videos + annotation lists)",
        description="Shapes crossing textured backgrounds, one class per direction of motion; "
        "writes OUT/videos/*.mp4, OUT/train.txt, OUT/val.txt, OUT/labels.txt.",
    )
    synthetic.add_argument("out", help="output folder")
    synthetic.add_argument("--train-per-class", type=POSITIVE, default=64)
    synthetic.add_argument("--val-per-class", type=POSITIVE, default=16)
    synthetic.add_argument("--frames", type=POSITIVE, default=32)
    synthetic.add_argument("--height", type=POSITIVE, default=48)
    synthetic.add_argument("--width", type=POSITIVE, default=64)
    synthetic.add_argument("--seed", type=int, default=0)
    add_flags(synthetic, "quiet")
    synthetic.set_defaults(run=run_make_synthetic)

    planner = commands.add_parser(
        "plan",
        help="per-device memory of a training configuration, and the largest batch per chip",
        description="Compiles the real training step for the mesh on virtual CPU devices "
        "(abstract inputs: nothing is allocated) and prints XLA's per-device memory analysis "
        "and the largest batch per replica that fits on TPU v4, v5e, v5p, A100/H100 and "
        "H200. Runs on JAX in a child process, whatever KERAS_BACKEND says.",
    )
    planner.add_argument("--arch", required=True,
                         help="S16FT ... g14FT (fine-tuning) or S16PT ... g14PT (pretraining)")
    planner.add_argument("--devices", type=POSITIVE, default=8, help="devices (default 8)")
    planner.add_argument("--distribution", choices=["data", "fsdp"],
                         help="data or fsdp (default: fsdp on several devices)")
    planner.add_argument("--mesh", help="fsdp: batch x model devices, e.g. 2x4")
    planner.add_argument("--batch-size", type=POSITIVE,
                         help="global batch (default: one clip per replica)")
    planner.add_argument("--remat", action="store_true", help="recompute blocks (see finetune)")
    planner.add_argument("--mixed-precision", action="store_true", help="mixed_bfloat16")
    planner.add_argument("--accumulate", type=POSITIVE, default=1,
                         help="gradient accumulation (adds its accumulators)")
    planner.add_argument("--num-frames", type=POSITIVE, default=16)
    planner.add_argument("--image-size", type=POSITIVE, default=224)
    planner.add_argument("--num-classes", type=POSITIVE, default=400)
    add_flags(planner, "json", "quiet")
    planner.set_defaults(run=run_plan)
    return parser


def run_plan(args):
    from videomae_keras.plan import format_plan, plan

    distribution = args.distribution or ("fsdp" if args.devices > 1 else None)
    result = plan(args.arch, devices=args.devices, distribution=distribution, mesh=args.mesh,
                  batch_size=args.batch_size, remat=args.remat,
                  mixed_precision=args.mixed_precision, accumulate=args.accumulate,
                  num_frames=args.num_frames, image_size=args.image_size,
                  num_classes=args.num_classes, progress=not args.quiet)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(format_plan(result)))
    return 0


_INTERRUPTED = {
    "pretrain": "interrupted; the last backup is kept: rerun the same command to resume",
    "finetune": "interrupted; the last backup is kept: rerun the same command to resume",
    "port": "interrupted; nothing partial was kept",
}


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silences file descriptor 2 while TensorFlow loads: it logs "Could not find cuda
    drivers" and CPU-feature notes from C++ on CPU-only machines, before its log level
    applies. Python exceptions are unaffected; VIDEOMAE_KERAS_VERBOSE_IMPORT=1 keeps it all."""
    if os.environ.get("VIDEOMAE_KERAS_VERBOSE_IMPORT"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (some services)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietTensorFlowImport:
    """An import hook for this process: TensorFlow, whenever something imports it (Keras
    does to save a `.keras` file or to seed, whatever the backend), is imported with file
    descriptor 2 silenced, so its C++ start-up lines never reach the terminal."""

    looking = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self.looking:
            return None
        import importlib.machinery

        self.looking = True  # let the other finders find the real module
        try:
            spec = importlib.machinery.PathFinder.find_spec(name, path)
        finally:
            self.looking = False
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader:
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with _quiet_native_stderr():
            self.loader.exec_module(module)

    def __getattr__(self, name):  # get_resource_reader, is_package, ...
        return getattr(self.loader, name)


def _needs_keras(args):
    if args.command == "plan":
        return False  # it compiles in a child process of its own
    return not (args.command == "port" and getattr(args, "list", False))


def _start(args):
    """Loads Keras and the package for a command, quietly, and says which backend runs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's cuInit error on CPUs
    if "tensorflow" not in sys.modules and not os.environ.get("VIDEOMAE_KERAS_VERBOSE_IMPORT"):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
    import keras

    import videomae_keras

    videomae_keras.load_all()
    from videomae_keras.video.io import quiet_decoders

    quiet_decoders()
    # huggingface_hub logs each retry of a cut download; the error that follows says it all
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    if not getattr(args, "quiet", False):
        print(f"videomae-keras {args.command}: Keras {keras.__version__}, "
              f"{keras.backend.backend()} backend (KERAS_BACKEND chooses)", file=sys.stderr,
              flush=True)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it unwinds like Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_ERROR
    if getattr(args, "check", None):  # arguments that only make sense together
        try:
            args.check(args)
        except _UsageError as e:
            parser.error(str(e))  # exits 2, like argparse's own checks
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args):
    try:
        if _needs_keras(args):
            _start(args)
        return args.run(args)
    except KeyboardInterrupt as e:
        what = _INTERRUPTED.get(args.command, "interrupted")
        print(f"videomae-keras {args.command}: {what}", file=sys.stderr)
        return 128 + signal.SIGTERM if isinstance(e, _Terminated) else EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_VERIFY_FAILED
    except Exception as e:  # one line, no traceback (VIDEOMAE_KERAS_DEBUG=1 shows it)
        if os.environ.get("VIDEOMAE_KERAS_DEBUG"):
            raise
        porting = sys.modules.get("videomae_keras.checkpoints.porting")  # only it raises these
        if porting is not None and isinstance(e, porting.VerificationError):
            print(f"videomae-keras {args.command}: verification failed: {e}", file=sys.stderr)
            return EXIT_VERIFY_FAILED
        print(f"videomae-keras {args.command}: error: {one_line(e)}", file=sys.stderr)
        return EXIT_ERROR


def one_line(error):
    """An exception as the one line the command prints: its message's first line, with the
    type's name where the type says more than the message (not for the usual errors)."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    known = (_UsageError, ValueError, KeyError, FileExistsError, FileNotFoundError,
             ImportError, RuntimeError, OSError)
    prefix = "" if isinstance(error, known) else f"{type(error).__name__}: "
    text = str(message).strip()
    return prefix + (text.splitlines()[0] if text else type(error).__name__)


if __name__ == "__main__":
    sys.exit(main())
