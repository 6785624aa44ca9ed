"""`videomae-keras reconstruct`: picture a pretraining model's reconstruction."""

import json
import os

from videomae_keras.commands.arguments import (
    DEFAULT_PRETRAINER,
    add_flags,
    add_picture_arguments,
    check_videos,
    fraction,
    load_weights,
)

NAME = 'reconstruct'
HELP = "picture a pretraining model's reconstruction of a masked clip (PNG + GIF)"
DESCRIPTION = (
    'Mask the centre clip of a video with tube masking, reconstruct it with a pretraining '
    'model and write original | masked | reconstruction as a PNG grid and an animated GIF. '
    "Masked patches are un-normalised with the original patch's mean and std, as the official"
    ' visualisation does.'
)


def add_arguments(parser):
    add_picture_arguments(parser, DEFAULT_PRETRAINER)
    parser.add_argument("--mask-ratio", type=fraction(0.0, 1.0, low_inclusive=False),
                        help="tube mask ratio (default: the checkpoint's, 0.9)")
    parser.add_argument("--seed", type=int, default=0, help="mask seed (default 0)")
    add_flags(parser, "overwrite", "json")


def run(args):
    from videomae_keras.atomic import check_writable
    from videomae_keras.progress import Stages
    from videomae_keras.reconstruction import reconstruct_video

    check_videos([args.video])
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
    model, _ = load_weights(args, stages, **overrides)
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
