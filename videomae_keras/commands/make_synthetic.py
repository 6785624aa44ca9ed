"""`videomae-keras make-synthetic`: write the synthetic moving-shapes data set."""

from videomae_keras.commands.arguments import POSITIVE, add_flags

NAME = 'make-synthetic'
HELP = 'write the synthetic moving-shapes data set (videos + annotation lists)'
DESCRIPTION = (
    'Shapes crossing textured backgrounds, one class per direction of motion; writes '
    'OUT/videos/*.mp4, OUT/train.txt, OUT/val.txt, OUT/labels.txt.'
)


def add_arguments(parser):
    parser.add_argument("out", help="output folder")
    parser.add_argument("--train-per-class", type=POSITIVE, default=64)
    parser.add_argument("--val-per-class", type=POSITIVE, default=16)
    parser.add_argument("--frames", type=POSITIVE, default=32)
    parser.add_argument("--height", type=POSITIVE, default=48)
    parser.add_argument("--width", type=POSITIVE, default=64)
    parser.add_argument("--seed", type=int, default=0)
    add_flags(parser, "quiet")


def run(args):
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
