"""`videomae-keras explain`: where a classifier looks, as heatmaps over a clip's frames."""

import json

from videomae_keras.commands.arguments import (
    DEFAULT_CLASSIFIER,
    add_flags,
    add_picture_arguments,
    check_videos,
    load_weights,
    registered_labels,
)

NAME = "explain"
HELP = "heatmaps of where a classifier looks (PNG grid, GIF, MP4)"
DESCRIPTION = (
    "Explain a classifier's decision on the centre clip of a video: a heatmap over the token "
    "grid for the predicted class (or --target), by Grad-CAM on the last block's attention "
    "input or by attention rollout, laid over the frames. Writes OUT/STEM.METHOD.png (clip "
    "and overlay rows, the class and method above them), .gif and .mp4 (where OpenCV can "
    "write MP4)."
)


def add_arguments(parser):
    add_picture_arguments(parser, DEFAULT_CLASSIFIER, animated="GIF and MP4")
    parser.add_argument("--target", metavar="CLASS",
                        help="class index or name to explain (default: the predicted class)")
    parser.add_argument("--method", choices=("gradcam", "rollout"), default="gradcam",
                        help="gradcam (class-specific, default) or rollout (attention flow, "
                        "the same for every class)")
    parser.add_argument("--no-mp4", action="store_true", help="no MP4")
    add_flags(parser, "overwrite", "json")


def run(args):
    from videomae_keras.atomic import check_writable
    from videomae_keras.explain import default_paths, explain_video
    from videomae_keras.progress import Stages

    check_videos([args.video])
    paths = default_paths(args.video, args.out, args.method)
    kinds = ["png"] + [k for k, off in (("gif", args.no_gif), ("mp4", args.no_mp4)) if not off]
    for kind in kinds:
        check_writable(paths[kind], args.overwrite)
    stages = Stages(3, enabled=not args.quiet)
    model, label_map = load_weights(args, stages)
    labels = registered_labels(model, label_map)
    result = stages.run(f"explaining {args.video}", explain_video, model, args.video,
                        target=args.target, method=args.method, labels=labels,
                        sampling_rate=args.sampling_rate, backend=args.decoder)
    written, skipped = [], []

    def save():
        written.append(result.save_png(paths["png"], overwrite=args.overwrite))
        if "gif" in kinds:
            written.append(result.save_gif(paths["gif"], overwrite=args.overwrite, fps=args.fps))
        if "mp4" in kinds:
            try:
                written.append(result.save_mp4(paths["mp4"], overwrite=args.overwrite,
                                               fps=args.fps))
            except RuntimeError as error:  # this OpenCV has no MP4 writer
                skipped.append(f"{paths['mp4']}: {error}")

    stages.run("writing pictures", save)
    report = {"video": args.video, "method": args.method, "target": result.target,
              "label": result.label, "probability": result.probability, "files": written,
              "skipped": skipped}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.video}: {result.label} ({result.probability:.1%}) explained by "
              f"{args.method}")
        for path in written:
            print(f"wrote {path}")
        for line in skipped:
            print(f"skipped {line}")
    return 0


