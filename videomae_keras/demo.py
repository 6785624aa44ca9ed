"""`videomae-keras demo`: the tiny VideoMAE trained in this project, offline.

The package ships a small pretraining model and its fine-tuned classifier (trained on the
synthetic moving-shapes data set by `tools/train_demo_models.py`, figures in
`weights/demo/report.json`) and a sample clip. The demo classifies the clip and writes a
reconstruction picture.
"""

import json
import os
import sys

from videomae_keras import presets

FILES = {
    "classifier": "demo/tiny_finetuned.keras",
    "pretrainer": "demo/tiny_pretrained.keras",
    "labels": "demo/labels.txt",
    "report": "demo/report.json",
    "clip": "samples/demo_clip.mp4",
}


def demo_files():
    """Paths of the shipped demo files; a clear error if the installation lacks them."""
    paths = {key: presets.data_path(relative) for key, relative in FILES.items()}
    missing = [relative for key, relative in FILES.items() if not os.path.isfile(paths[key])]
    if missing:
        raise FileNotFoundError(
            f"The demo files {', '.join(missing)} are not in this installation (weights/); "
            "reinstall the package or rebuild them with python tools/train_demo_models.py."
        )
    return paths


def sample_video():
    """Path of the shipped sample clip (a disc moving right over a textured background, 32
    frames at 48x64): a video file every installation has, for examples and quick checks."""
    return demo_files()["clip"]


def run_demo(out="videomae-demo", overwrite=False, quiet=False):
    """Predicts on the shipped clip and writes OUT/demo_clip.reconstruction.{png,gif}."""
    import keras

    from videomae_keras.atomic import check_writable
    from videomae_keras.models.saving import load_keras_model
    from videomae_keras.inference import predict_video
    from videomae_keras.progress import Stages
    from videomae_keras.reconstruction import reconstruct_video

    paths = demo_files()
    png = os.path.join(out, "demo_clip.reconstruction.png")
    gif = os.path.join(out, "demo_clip.reconstruction.gif")
    check_writable(png, overwrite)
    check_writable(gif, overwrite)
    with open(paths["report"], encoding="utf-8") as f:
        report = json.load(f)
    stages = Stages(4, enabled=not quiet)
    classifier = stages.run("loading the tiny classifier", load_keras_model, paths["classifier"])
    prediction = stages.run(
        "classifying the sample clip", predict_video, classifier, paths["clip"],
        views=(2, 3), top_k=4, sampling="dense",  # the model carries its class names
        sampling_rate=report["sampling_rate"],
    )
    pretrainer = stages.run("loading the tiny pretraining model", load_keras_model,
                            paths["pretrainer"])
    result = stages.run("reconstructing the sample clip", reconstruct_video, pretrainer,
                        paths["clip"], seed=0, sampling_rate=report["sampling_rate"])
    os.makedirs(out, exist_ok=True)
    result.save_png(png, overwrite=overwrite)
    result.save_gif(gif, overwrite=overwrite)
    print(f"VideoMAE demo ({keras.backend.backend()} backend): tiny models trained in this "
          "project on synthetic moving shapes (no download).")
    print(f"sample clip: {paths['clip']} (true class: {report['sample_clip_label']})")
    print(prediction)
    figures = report["pretraining"]
    print(f"reconstruction: {int(result.mask.sum())} of {result.mask.size} tokens masked, "
          f"{result.target} MSE {result.loss:.4f} on this clip (validation set: model "
          f"{figures['val_mse']:.4f}; filling masked patches with the data set's mean colour "
          f"{figures['val_mse_data_set_mean_colour']:.4f}, with the clip's "
          f"{figures['val_mse_clip_mean_colour']:.4f})")
    print(f"wrote {os.path.abspath(png)}")
    print(f"wrote {os.path.abspath(gif)}")
    print(f"(training figures: {paths['report']})")
    sys.stdout.flush()
    return 0
