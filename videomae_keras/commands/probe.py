"""`videomae-keras probe`: a linear classifier on a frozen encoder's features."""

import json

from videomae_keras.commands.arguments import (
    DEFAULT_PRETRAINER,
    POSITIVE,
    POSITIVE_FLOAT,
    add_flags,
    add_weights_arguments,
    load_weights,
)

NAME = "probe"
HELP = "linear probe: a linear classifier on a frozen encoder's pooled features"
DESCRIPTION = (
    "Freeze the encoder of --weights, compute the pooled features of the centre clip of "
    "every video in TRAIN_LIST and --val-list once (cached in parts: a stopped run resumes), "
    "train a linear classifier on them with Keras and report its top-1 accuracy on the "
    "validation list. Lists are official 'path label' files."
)


def add_arguments(parser):
    parser.add_argument("train_list", metavar="TRAIN_LIST", help="training annotation list")
    parser.add_argument("--val-list", required=True, metavar="VAL_LIST",
                        help="validation annotation list")
    parser.add_argument("--root", help="folder the lists' relative paths start from "
                        "(default: each list's folder)")
    add_weights_arguments(parser, DEFAULT_PRETRAINER)
    parser.add_argument("--cache", metavar="DIR",
                        help="feature cache (default: .probe-cache beside TRAIN_LIST)")
    parser.add_argument("--epochs", type=POSITIVE, default=100, help="default 100")
    parser.add_argument("--lr", type=POSITIVE_FLOAT, default=1e-2,
                        help="AdamW learning rate (default 0.01)")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="default 1e-4")
    parser.add_argument("--batch-size", type=POSITIVE, default=256,
                        help="features per step (default 256)")
    parser.add_argument("--feature-batch-size", type=POSITIVE, default=8,
                        help="videos per encoder call (default 8)")
    parser.add_argument("--sampling-rate", type=POSITIVE, default=4,
                        help="frame stride of the clip (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="default 0")
    parser.add_argument("--out", metavar="DIR",
                        help="also write DIR/probe.keras (the classifier over pooled "
                        "features) and DIR/probe.json")
    add_flags(parser, "overwrite", "json")


def run(args):
    import os

    from videomae_keras.atomic import check_writable
    from videomae_keras.data.annotations import read_annotation_lines
    from videomae_keras.probe import linear_probe, save_probe
    from videomae_keras.progress import Stages

    for path in (args.train_list, args.val_list):
        read_annotation_lines(path, args.root)  # a missing or empty list: one line, now
    if args.out:
        for name in ("probe.keras", "probe.json"):
            check_writable(os.path.join(args.out, name), args.overwrite)
    stages = Stages(3, enabled=not args.quiet)
    model, _ = load_weights(args, stages)
    result = stages.run(
        "probing", linear_probe, model, args.train_list, args.val_list, cache_dir=args.cache,
        root=args.root, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.lr, weight_decay=args.weight_decay,
        sampling_rate=args.sampling_rate, feature_batch_size=args.feature_batch_size,
        seed=args.seed, backend=args.decoder, progress=stages)
    written = save_probe(result, args.out, args.overwrite) if args.out else []
    if args.json:
        print(json.dumps({**result.to_dict(), "files": written}, indent=2))
    else:
        print(result)
        for path in written:
            print(f"wrote {path}")
    return 0
