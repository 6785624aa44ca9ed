"""`videomae-keras finetune`: supervised fine-tuning from a pretrained encoder."""

import os

from videomae_keras.commands.arguments import (
    POSITIVE,
    POSITIVE_FLOAT,
    RATIO,
    at_least,
    fraction,
    views,
)
from videomae_keras.commands.training import add_training_arguments, distribution_arguments

NAME = 'finetune'
HELP = 'supervised fine-tuning from a pretrained encoder with fit()'
DESCRIPTION = (
    'Fine-tune a classifier whose encoder comes from a pretraining model (.keras from '
    '`pretrain`, or any from_pretrained source); fc_norm and the head start fresh. AdamW '
    '(0.9, 0.999), layer-wise lr decay, label smoothing, drop path, random resized crop and '
    'flip, warm-up and cosine decay; top-1 on --val-list at the end.'
)


def add_arguments(parser):
    parser.add_argument("train_list", help="annotation file: 'path label' per line")
    parser.add_argument("--pretrained", required=True,
                          help="pretrained model: .keras file or any from_pretrained source")
    parser.add_argument("--num-classes", type=POSITIVE,
                          help="classes of the head (default: from --labels, or from the "
                          "train list when its labels are class names)")
    parser.add_argument("--labels",
                          help="class names, one per line in head order; saved in the model "
                          "(predict shows them). Lists may then give names as labels")
    parser.add_argument("--val-list", help="annotation file for the final top-1")
    parser.add_argument("--test-views", type=views,
                          help="also evaluate --val-list with the multi-view test, clips x "
                          "crops (official Kinetics: 5x3)")
    parser.add_argument("--lr", type=POSITIVE_FLOAT, default=1e-3,
                          help="base lr per 256 clips")
    parser.add_argument("--layer-decay", type=fraction(0.0, 1.0, True, False), default=0.75)
    parser.add_argument("--drop-path", type=RATIO, default=0.1)
    parser.add_argument("--label-smoothing", type=RATIO, default=0.1)
    parser.add_argument("--mixup", type=at_least(0.0, float), default=0.8,
                          help="mixup Beta alpha (official 0.8; 0 turns it off)")
    parser.add_argument("--cutmix", type=at_least(0.0, float), default=1.0,
                          help="cutmix Beta alpha, same box in every frame (official 1.0; 0 off)")
    parser.add_argument("--min-scale", type=fraction(0.0, 1.0, True, False), default=0.08,
                          help="smallest random-resized-crop area (default 0.08)")
    parser.add_argument("--no-flip", action="store_true",
                          help="no horizontal flip (SSv2, direction-dependent classes)")
    add_training_arguments(parser)


def run(args):
    from videomae_keras.training.run import finetune

    model, results = finetune(
        args.train_list, args.out, args.pretrained, args.num_classes, val_list=args.val_list,
        epochs=args.epochs, batch_size=args.batch_size, base_lr=args.lr,
        layer_decay=args.layer_decay, warmup_epochs=args.warmup_epochs,
        drop_path_rate=args.drop_path, label_smoothing=args.label_smoothing,
        flip=not args.no_flip, scale=(args.min_scale, 1.0), sampling_rate=args.sampling_rate,
        clip_grad=args.clip_grad, workers=args.workers, seed=args.seed,
        dtype="mixed_bfloat16" if args.mixed_precision else None, progress=not args.quiet,
        mixup=args.mixup, cutmix=args.cutmix, test_views=args.test_views,
        labels=args.labels, overwrite=args.overwrite, check_videos=not args.skip_video_check,
        remat=args.remat, **distribution_arguments(args),
    )
    accuracy = results.get("val_top1")
    views = results.get("val_top1_views")
    verb = {"finished": "kept", "evaluate": "evaluated"}.get(model.run_state.action, "wrote")
    print(f"{verb} {os.path.join(args.out, 'finetuned.keras')}"
          + (f"; validation top-1 {accuracy:.3f}" if accuracy is not None else "")
          + (f" (one centre clip), {views:.3f} ({results['test_views']} views)"
             if views is not None else ""))
    return 0
