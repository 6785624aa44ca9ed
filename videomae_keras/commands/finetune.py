"""`videomae-keras finetune`: supervised fine-tuning from a pretrained encoder."""

import os

from videomae_keras.commands.training import add_training_arguments, training_settings

NAME = 'finetune'
HELP = 'supervised fine-tuning from a pretrained encoder with fit()'
DESCRIPTION = (
    'Fine-tune a classifier whose encoder comes from a pretraining model (.keras from '
    '`pretrain`, or any from_pretrained source); fc_norm and the head start fresh. AdamW '
    '(0.9, 0.999), layer-wise lr decay, label smoothing, drop path, random resized crop and '
    'flip, warm-up and cosine decay; top-1 on --val-list at the end.'
)


def add_arguments(parser):
    from videomae_keras.training.settings import FinetuneSettings

    parser.add_argument("train_list", help="annotation file: 'path label' per line")
    parser.add_argument("--pretrained", required=True,
                        help="pretrained model: .keras file or any from_pretrained source")
    add_training_arguments(parser, FinetuneSettings)


def run(args):
    from videomae_keras.convert import from_pretrained
    from videomae_keras.training.run import finetune

    loader = None if args.pretrained.endswith(".keras") else from_pretrained
    model, results = finetune(args.train_list, args.out, args.pretrained,
                              settings=training_settings(args), progress=not args.quiet,
                              loader=loader)
    accuracy = results.get("val_top1")
    views = results.get("val_top1_views")
    verb = {"finished": "kept", "evaluate": "evaluated"}.get(model.run_state.action, "wrote")
    print(f"{verb} {os.path.join(args.out, 'finetuned.keras')}"
          + (f"; validation top-1 {accuracy:.3f}" if accuracy is not None else "")
          + (f" (one centre clip), {views:.3f} ({results['test_views']} views)"
             if views is not None else ""))
    return 0
