"""`videomae-keras predict`: classify videos with the official multi-view test."""

import json

from videomae_keras.commands.arguments import (
    EXIT_ERROR,
    DEFAULT_CLASSIFIER,
    POSITIVE,
    add_flags,
    add_view_arguments,
    add_weights_arguments,
    check_videos,
    each_video,
    load_weights,
)

NAME = 'predict'
HELP = 'classify videos (official multi-view test, softmax averaged over views)'
DESCRIPTION = (
    'Classify video files with a fine-tuned VideoMAE. Clips are sampled as the official test '
    'does (dense 16x5x3 for Kinetics-style heads, segment 16x2x3 for Something-Something v2),'
    ' three crops along the long side, and the softmax probabilities are averaged over the '
    'views.'
)


def add_arguments(parser):
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    add_weights_arguments(parser, DEFAULT_CLASSIFIER)
    add_view_arguments(parser, "clips x crops, e.g. 5x3 (default: 5x3 dense, 2x3 segment)")
    parser.add_argument("--top-k", type=POSITIVE, default=5, help="classes to show (default 5)")
    parser.add_argument("--labels", help="class names: a text file (one per line) or a "
                         "shipped map (kinetics400, ssv2, ucf101); default by head size")
    add_flags(parser, "json")


def run(args):
    from videomae_keras import presets
    from videomae_keras.inference import predict_video
    from videomae_keras.progress import Stages

    check_videos(args.videos)
    stages = Stages(1 + len(args.videos), enabled=not args.quiet)
    model, label_map = load_weights(args, stages)
    labels = args.labels
    if labels is None and label_map and not getattr(model, "class_names", None):
        try:
            presets.labels(label_map)
            labels = label_map
        except KeyError:
            labels = False  # a label space we do not ship (e.g. Kinetics-710): indices
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
