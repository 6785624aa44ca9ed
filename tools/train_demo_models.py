#!/usr/bin/env python
"""Builds the demo models shipped in weights/demo/: the synthetic moving-shapes data set, a
tiny VideoMAE pretrained on it, the same encoder fine-tuned to classify the direction of
motion, and the figures that show learning worked.

Usage: python tools/train_demo_models.py [--work DIR] [--pretrain-epochs 90]
           [--finetune-epochs 30] [--per-class 256] [--pretrain-lr 0.064]
           [--finetune-lr 0.064] [--seed 0]

Writes weights/demo/tiny_pretrained.keras, tiny_finetuned.keras, labels.txt, report.json and
weights/samples/demo_clip.mp4. Runs on CPU in minutes (`KERAS_BACKEND=torch` is fastest
here). The data set and run folders (logs, TensorBoard) stay in --work.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import keras  # noqa: E402

from videomae_keras.data import (  # noqa: E402
    MOTION_CLASSES,
    VideoClipDataset,
    make_synthetic_dataset,
    read_annotations,
    render_clip,
)
from videomae_keras.data.synthetic import _write  # noqa: E402
from videomae_keras.masking import TubeMaskingGenerator  # noqa: E402
from videomae_keras.patches import patchify  # noqa: E402
from videomae_keras.losses import pretraining_targets  # noqa: E402
from videomae_keras.video import unnormalize  # noqa: E402
from videomae_keras.training.run import evaluate, finetune, pretrain  # noqa: E402

FRAMES, SIZE, RATE, MASK_RATIO = 16, 32, 2, 0.75


def _colour_guess(colour, targets):
    """(B, 3) colours -> a prediction that fills every pixel of every masked patch."""
    colour = np.broadcast_to(colour, (len(targets), 3))
    return np.broadcast_to(np.tile(colour[:, None, :], (1, targets.shape[-1] // 3, 1)).reshape(
        len(targets), 1, -1), targets.shape)


def mean_colour(samples, count=256):
    """Mean RGB in [0, 1] of the centre clips of (up to) `count` training videos."""
    data = VideoClipDataset(samples[:count], "eval", FRAMES, SIZE, 16, sampling_rate=RATE)
    return np.mean([unnormalize(data[i][0]).mean(axis=(0, 1, 2, 3)) for i in range(len(data))],
                   axis=0)


def reconstruction_losses(model, samples, train_colour, seed=0):
    """Mean MSE on the masked patches of the validation clips (centre clip, a fresh tube mask
    each) on the model's target, for the model and two predictors that know no structure:
    every masked pixel set to the training set's mean colour ("data-set mean"), or to the
    mean colour of the clip's own visible patches ("clip mean"). For norm-pix targets the
    trivial predictor is zero (each target patch has mean 0 and variance about 1)."""
    data = VideoClipDataset(samples, "eval", FRAMES, SIZE, 16, sampling_rate=RATE)
    masks = TubeMaskingGenerator(model.grid, MASK_RATIO, seed=seed)
    config = model.architecture
    errors = {"model": [], "data-set mean": [], "clip mean": []}
    for index in range(len(data)):
        video, _ = data[index]
        mask = np.stack([np.asarray(masks(), bool).reshape(-1) for _ in video])
        targets = keras.ops.convert_to_numpy(pretraining_targets(
            video, mask, model.num_masked, config["tubelet_size"], config["patch_size"],
            model.norm_pix_loss))
        predictions = np.asarray(model.predict_on_batch([video, mask]))
        errors["model"].append(np.mean((predictions - targets) ** 2))
        if model.norm_pix_loss:
            errors["data-set mean"].append(np.mean(targets ** 2))
            errors["clip mean"].append(np.mean(targets ** 2))
            continue
        pixels = patchify(unnormalize(video), config["tubelet_size"], config["patch_size"])
        clip = np.stack([pixels[i][~mask[i]].mean(axis=(0, 1)) for i in range(len(video))])
        for name, colour in (("data-set mean", train_colour), ("clip mean", clip)):
            errors[name].append(np.mean((_colour_guess(colour, targets) - targets) ** 2))
    return {name: float(np.mean(values)) for name, values in errors.items()}


def _arguments_that_matter(argv):
    """The command-line arguments `argv` without --work (a scratch folder: it changes no
    result, and a local path does not belong in the shipped report)."""
    args, kept = list(argv), []
    while args:
        arg = args.pop(0)
        if arg == "--work":
            args = args[1:]
        elif not arg.startswith("--work="):
            kept.append(arg)
    return kept


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="folder for the data set and runs (default: temporary)")
    parser.add_argument("--pretrain-epochs", type=int, default=90)
    parser.add_argument("--finetune-epochs", type=int, default=30)
    parser.add_argument("--per-class", type=int, default=256, help="training videos per class")
    parser.add_argument("--pretrain-lr", type=float, default=0.064,
                        help="base lr per 256 clips (a tiny ViT wants far more than ViT-B)")
    parser.add_argument("--finetune-lr", type=float, default=0.064)
    parser.add_argument("--layer-decay", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="videomae-demo-")
    start = time.time()

    data = make_synthetic_dataset(os.path.join(work, "data"), train_per_class=args.per_class,
                                  val_per_class=32, seed=args.seed)
    train, val = read_annotations(data["train"]), read_annotations(data["val"])

    t0 = time.time()
    pretrainer = pretrain(data["train"], os.path.join(work, "pretrain"), "tiny",
                          epochs=args.pretrain_epochs, batch_size=16, base_lr=args.pretrain_lr,
                          warmup_epochs=max(1, args.pretrain_epochs // 20),
                          mask_ratio=MASK_RATIO, num_frames=FRAMES, image_size=SIZE,
                          sampling_rate=RATE, seed=args.seed, progress=False,
                          norm_pix_loss=False)
    pretrain_seconds = time.time() - t0
    losses = reconstruction_losses(pretrainer, val, mean_colour(train))
    print(f"pretraining: {pretrain_seconds:.0f}s, validation pixel MSE on masked patches "
          f"{losses['model']:.4f} (data-set mean colour {losses['data-set mean']:.4f}, "
          f"clip mean colour {losses['clip mean']:.4f})")

    t0 = time.time()
    classifier, results = finetune(
        data["train"], os.path.join(work, "finetune"),
        os.path.join(work, "pretrain", "pretrained.keras"), len(MOTION_CLASSES),
        val_list=data["val"], epochs=args.finetune_epochs, batch_size=16,
        base_lr=args.finetune_lr, layer_decay=args.layer_decay,
        warmup_epochs=max(1, args.finetune_epochs // 10), test_views="2x3",
        drop_path_rate=0.1, label_smoothing=0.1, flip=False, scale=(0.6, 1.0),
        sampling_rate=RATE, seed=args.seed, progress=False, labels=data["labels"],
    )
    finetune_seconds = time.time() - t0
    train_top1 = evaluate(classifier, train, FRAMES, SIZE, RATE)
    print(f"fine-tuning: {finetune_seconds:.0f}s, validation top-1 {results['val_top1']:.3f} "
          f"(2x3 views {results['val_top1_views']:.3f}; train {train_top1:.3f}, "
          f"chance {1 / len(MOTION_CLASSES):.3f})")

    demo = os.path.join(ROOT, "weights", "demo")
    samples = os.path.join(ROOT, "weights", "samples")
    os.makedirs(demo, exist_ok=True)
    os.makedirs(samples, exist_ok=True)
    shutil.copy(os.path.join(work, "pretrain", "pretrained.keras"),
                os.path.join(demo, "tiny_pretrained.keras"))
    shutil.copy(os.path.join(work, "finetune", "finetuned.keras"),
                os.path.join(demo, "tiny_finetuned.keras"))
    shutil.copy(data["labels"], os.path.join(demo, "labels.txt"))
    label = 0  # "moving right": a clip drawn after the data set, seen by neither run
    _write(os.path.join(samples, "demo_clip.mp4"),
           render_clip(label, np.random.default_rng(10_000 + args.seed), 32, 48, 64))
    report = {
        "command": " ".join(["python tools/train_demo_models.py",
                             *_arguments_that_matter(sys.argv[1:])]),
        "backend": keras.backend.backend(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "data": {"classes": list(MOTION_CLASSES), "train_videos": len(train),
                 "val_videos": len(val), "frames": 32, "size": [48, 64]},
        "clip": {"num_frames": FRAMES, "image_size": SIZE},
        "sampling_rate": RATE,
        "pretraining": {"epochs": args.pretrain_epochs, "mask_ratio": MASK_RATIO,
                        "base_lr": args.pretrain_lr,
                        "parameters": pretrainer.count_params(),
                        "seconds": round(pretrain_seconds, 1),
                        "target": "pixels (norm_pix_loss=False)",
                        "val_mse": round(losses["model"], 6),
                        "val_mse_data_set_mean_colour": round(losses["data-set mean"], 6),
                        "val_mse_clip_mean_colour": round(losses["clip mean"], 6),
                        "trivial_predictors": {
                            "data-set mean colour": "every masked pixel set to the mean "
                                                    "colour of the training clips",
                            "clip mean colour": "every masked pixel set to the mean colour "
                                                "of the clip's visible patches"}},
        "finetuning": {"epochs": args.finetune_epochs,
                       "parameters": classifier.count_params(),
                       "seconds": round(finetune_seconds, 1),
                       "base_lr": args.finetune_lr, "layer_decay": args.layer_decay,
                       "val_top1": round(results["val_top1"], 4),
                       "val_top1_2x3_views": round(results["val_top1_views"], 4),
                       "train_top1": round(train_top1, 4),
                       "chance": 1 / len(MOTION_CLASSES)},
        "sample_clip_label": MOTION_CLASSES[label],
        "total_seconds": round(time.time() - start, 1),
    }
    with open(os.path.join(demo, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
