"""`videomae-keras predict`: classify videos with the official multi-view test."""

import json

from videomae_keras.commands.arguments import (
    EXIT_ERROR,
    DEFAULT_CLASSIFIER,
    POSITIVE,
    add_flags,
    add_view_arguments,
    add_weights_arguments,
    add_window_arguments,
    check_videos,
    each_video,
    load_weights,
    registered_labels,
    UsageError,
    window_options,
)

NAME = 'predict'
HELP = 'classify videos (official multi-view test, softmax averaged over views)'
DESCRIPTION = (
    'Classify video files with a fine-tuned VideoMAE. Clips are sampled as the official test '
    'does (dense 16x5x3 for Kinetics-style heads, segment 16x2x3 for Something-Something v2),'
    ' three crops along the long side, and the softmax probabilities are averaged over the '
    'views. With --over-time: the top classes of every sliding window over the whole video, '
    'with its start and end in seconds, and a timeline picture (--timeline).'
)


def add_arguments(parser):
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    add_weights_arguments(parser, DEFAULT_CLASSIFIER)
    add_view_arguments(parser, "clips x crops, e.g. 5x3 (default: 5x3 dense, 2x3 segment)")
    parser.add_argument("--top-k", type=POSITIVE, default=5, help="classes to show (default 5)")
    parser.add_argument("--labels", help="class names: a text file (one per line) or a "
                         "shipped map (kinetics400, ssv2, ucf101); default by head size")
    parser.add_argument("--over-time", action="store_true",
                        help="classify every sliding window (see the window options)")
    parser.add_argument("--timeline", metavar="PNG",
                        help="with --over-time: the timeline picture (default "
                        "STEM.timeline.png here; one video only)")
    add_window_arguments(parser)
    add_flags(parser, "overwrite", "json")


def run(args):
    from videomae_keras.inference import predict_video
    from videomae_keras.progress import Stages

    check_videos(args.videos)
    windows = window_options(args)
    if windows and not args.over_time:
        raise UsageError("the window options go with --over-time")
    if args.timeline and not args.over_time:
        raise UsageError("--timeline goes with --over-time")
    pictures = _timeline_paths(args) if args.over_time else None
    stages = Stages(1 + len(args.videos), enabled=not args.quiet)
    model, label_map = load_weights(args, stages)
    labels = args.labels if args.labels is not None else registered_labels(model, label_map)
    if args.over_time:
        return _over_time(args, model, stages, labels, windows, pictures)
    outcomes = each_video(
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


def _timeline_paths(args):
    """The timeline picture of each video, checked before anything runs."""
    import os

    from videomae_keras.atomic import check_writable

    if args.views or args.sampling not in (None, "dense"):
        raise UsageError("--over-time takes the centre crop of consecutive sampled frames: "
                         "drop --views and --sampling")
    if args.timeline and len(args.videos) > 1:
        raise UsageError("--timeline names one picture: give one video, or leave it out")
    pictures = [args.timeline or f"{os.path.splitext(os.path.basename(v))[0]}.timeline.png"
                for v in args.videos]
    if len(set(pictures)) != len(pictures):
        raise UsageError("two videos share a file name, so their timelines would too")
    for picture in pictures:
        check_writable(picture, args.overwrite)
    return pictures


def _over_time(args, model, stages, labels, windows, pictures):
    """Top classes per window of each video and a timeline picture of each."""
    from videomae_keras.over_time import predict_over_time

    outcomes = each_video(
        "predict", args.videos, stages, "predicting over time",
        lambda path: predict_over_time(
            model, path, top_k=args.top_k, labels=labels, sampling_rate=args.sampling_rate,
            batch_size=args.batch_size, backend=args.decoder, progress=stages, **windows),
    )
    results, failures = [], 0
    for (path, prediction), picture in zip(outcomes, pictures):
        if isinstance(prediction, Exception):
            failures += 1
            results.append({"video": path, "error": str(prediction)})
            continue
        written = prediction.save_timeline(picture, overwrite=args.overwrite)
        results.append({**prediction.to_dict(), "timeline": written})
        if not args.json:
            print(prediction)
            print(f"wrote {written}")
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    return EXIT_ERROR if failures else 0
