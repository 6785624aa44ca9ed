"""`videomae-keras pretrain`: self-supervised pretraining with fit()."""

import os

from videomae_keras.commands.arguments import POSITIVE, POSITIVE_FLOAT, RATIO, fraction
from videomae_keras.commands.training import add_training_arguments, distribution_arguments

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
    parser.add_argument("train_list", help="annotation file: 'path label' per line")
    parser.add_argument("--arch", default="B16PT",
                          help="S16PT, B16PT, L16PT, H16PT, g14PT or tiny (default B16PT)")
    parser.add_argument("--lr", type=POSITIVE_FLOAT, default=1.5e-4,
                          help="base lr per 256 clips")
    parser.add_argument("--mask-ratio", type=fraction(0.0, 1.0, low_inclusive=False),
                          default=0.9)
    parser.add_argument("--pixel-loss", action="store_true",
                          help="plain [0, 1] pixel targets instead of per-patch normalised ones")
    parser.add_argument("--decoder-mask-ratio", type=RATIO, default=0.0,
                          help="VideoMAE V2 dual masking: decode only a running-cell share "
                          "of the tokens (V2: 0.5; default 0, VideoMAE V1)")
    parser.add_argument("--num-frames", type=POSITIVE, default=16)
    parser.add_argument("--image-size", type=POSITIVE, default=224)
    add_training_arguments(parser)


def run(args):
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
        **distribution_arguments(args),
    )
    if model.run_state.action == "finished":
        return 0  # said so already; nothing was touched
    print(f"wrote {os.path.join(args.out, 'pretrained.keras')} "
          f"({model.count_params() / 1e6:.2f}M parameters); log: "
          f"{os.path.join(args.out, 'log.csv')}")
    return 0
