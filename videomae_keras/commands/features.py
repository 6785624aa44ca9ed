"""`videomae-keras features`: save pooled and token features of videos."""

import json
import os

from videomae_keras.commands.arguments import (
    EXIT_ERROR,
    DEFAULT_CLASSIFIER,
    UsageError,
    add_flags,
    add_view_arguments,
    add_weights_arguments,
    add_window_arguments,
    check_videos,
    each_video,
    load_weights,
    window_options,
)

NAME = 'features'
HELP = 'save pooled and token features of videos (.npz)'
DESCRIPTION = (
    'Run the encoder over views of each video and save pooled (views, D), embedding (D,: '
    'pooled averaged over views) and tokens (views, N, D) as .npz. With --window/--stride '
    '(or their -seconds forms): one embedding per sliding window over the whole video, '
    'with its start and end in seconds (embeddings, start_seconds, end_seconds, '
    'frame_indices).'
)


def add_arguments(parser):
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    parser.add_argument("--out", required=True,
                          help="an .npz file (one video) or a folder (NAME.features.npz)")
    add_weights_arguments(parser, DEFAULT_CLASSIFIER)
    add_view_arguments(parser, "clips x crops (default 1x1: centre clip, centre crop)")
    parser.add_argument("--no-tokens", action="store_true", help="save pooled features only")
    add_window_arguments(parser)
    add_flags(parser, "overwrite", "json")


def _features_path(out, video, many):
    stem = os.path.splitext(os.path.basename(video))[0]
    if many or os.path.isdir(out) or not out.endswith(".npz"):
        return os.path.join(out, f"{stem}.features.npz")
    return out


def run(args):
    import numpy as np

    from videomae_keras.atomic import atomic_output, check_writable
    from videomae_keras.inference import extract_features
    from videomae_keras.progress import Stages

    check_videos(args.videos)
    windows = window_options(args)
    if windows and (args.views or args.sampling not in (None, "dense")):
        raise UsageError("windows over time take the centre crop of consecutive sampled "
                         "frames: drop --views and --sampling")
    many = len(args.videos) > 1
    targets = [_features_path(args.out, v, many) for v in args.videos]
    if len(set(targets)) != len(targets):
        raise UsageError("two videos share a file name; give them separate --out folders")
    for target in targets:
        check_writable(target, args.overwrite)
    stages = Stages(1 + len(args.videos), enabled=not args.quiet)
    model, _ = load_weights(args, stages)
    if windows:
        return _over_time(args, model, stages, targets, windows)
    outcomes = each_video(
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


def _over_time(args, model, stages, targets, windows):
    """One embedding per window of each video, saved as .npz; a summary or JSON printed."""
    import numpy as np

    from videomae_keras.atomic import atomic_output
    from videomae_keras.over_time import features_over_time

    outcomes = each_video(
        "features", args.videos, stages, "features over time of",
        lambda path: features_over_time(
            model, path, sampling_rate=args.sampling_rate, batch_size=args.batch_size,
            backend=args.decoder, progress=stages, **windows),
    )
    summary, failures = [], 0
    for (path, result), target in zip(outcomes, targets):
        if isinstance(result, Exception):
            failures += 1
            continue
        with atomic_output(target, overwrite=args.overwrite, suffix=".npz") as temp:
            np.savez(temp, embeddings=result.embeddings, start_seconds=result.start_seconds,
                     end_seconds=result.end_seconds, frame_indices=result.frame_indices,
                     fps=np.float64(result.fps))
        item = {"file": target, **result.to_dict(embeddings=args.json)}
        summary.append(item)
        if not args.json:
            span = (f", {result.start_seconds[0]:.2f} to {result.end_seconds[-1]:.2f} s"
                    if len(result.embeddings) and np.isfinite(result.start_seconds[0]) else "")
            print(f"{path} -> {target} ({len(result.embeddings)} windows of {result.window} "
                  f"sampled frames, stride {result.stride}{span})")
    if args.json:
        print(json.dumps(summary if len(summary) > 1 else summary[0] if summary else [],
                         indent=2))
    return EXIT_ERROR if failures else 0
