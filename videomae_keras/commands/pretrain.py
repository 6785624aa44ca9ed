"""`videomae-keras pretrain`: self-supervised pretraining with fit()."""

import os

from videomae_keras.commands.training import add_training_arguments, training_settings

NAME = 'pretrain'
HELP = 'self-supervised pretraining (tube masking, norm-pix MSE) with fit()'
DESCRIPTION = (
    "Pretrain a VideoMAE on the videos of an annotation list ('path label' per line; labels "
    'unused): AdamW (0.9, 0.95), weight decay 0.05 (not on biases and norms), lr = --lr * '
    'batch / 256 with warm-up and cosine decay. Logs go to OUT/log.csv and OUT/tensorboard. '
    'Rerunning an interrupted command resumes it from its last backup; a finished run is left'
    ' as it is; another run in OUT is refused unless --overwrite.'
)


def add_arguments(parser):
    from videomae_keras.training.settings import PretrainSettings

    parser.add_argument("train_list", help="annotation file: 'path label' per line")
    add_training_arguments(parser, PretrainSettings)


def run(args):
    from videomae_keras.training.run import pretrain

    model = pretrain(args.train_list, args.out, settings=training_settings(args),
                     progress=not args.quiet)
    if model.run_state.action == "finished":
        return 0  # said so already; nothing was touched
    print(f"wrote {os.path.join(args.out, 'pretrained.keras')} "
          f"({model.count_params() / 1e6:.2f}M parameters); log: "
          f"{os.path.join(args.out, 'log.csv')}")
    return 0
