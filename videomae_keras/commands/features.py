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
    check_videos,
    each_video,
    load_weights,
)

NAME = 'features'
HELP = 'save pooled and token features of videos (.npz)'
DESCRIPTION = (
    'Run the encoder over views of each video and save pooled (views, D), embedding (D,: '
    'pooled averaged over views) and tokens (views, N, D) as .npz.'
)


def add_arguments(parser):
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    parser.add_argument("--out", required=True,
                          help="an .npz file (one video) or a folder (NAME.features.npz)")
    add_weights_arguments(parser, DEFAULT_CLASSIFIER)
    add_view_arguments(parser, "clips x crops (default 1x1: centre clip, centre crop)")
    parser.add_argument("--no-tokens", action="store_true", help="save pooled features only")
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
    many = len(args.videos) > 1
    targets = [_features_path(args.out, v, many) for v in args.videos]
    if len(set(targets)) != len(targets):
        raise UsageError("two videos share a file name; give them separate --out folders")
    for target in targets:
        check_writable(target, args.overwrite)
    stages = Stages(1 + len(args.videos), enabled=not args.quiet)
    model, _ = load_weights(args, stages)
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
