"""`videomae-keras demo`: the offline demo on the shipped tiny models."""

from videomae_keras.commands.arguments import add_flags

NAME = 'demo'
HELP = 'offline demo on the shipped tiny models: predict a sample clip, draw a reconstruction'
DESCRIPTION = (
    'Runs the small VideoMAE trained in this project on synthetic moving-shape videos '
    '(shipped in the package, no download): classifies the shipped sample clip and writes a '
    'reconstruction picture from the shipped pretraining model.'
)


def add_arguments(parser):
    parser.add_argument("--out", default="videomae-demo",
                      help="folder for the pictures (default: ./videomae-demo)")
    add_flags(parser, "overwrite", "quiet")


def run(args):
    from videomae_keras.demo import run_demo as demo

    return demo(args.out, overwrite=args.overwrite, quiet=args.quiet)
