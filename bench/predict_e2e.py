#!/usr/bin/env python
"""End to end: `videomae-keras predict` on a 10-second 720p clip (5x3 views) against the same
work done with transformers.

Usage: python bench/predict_e2e.py [--backends jax,tensorflow,torch] [--repeats 3]
                                   [--views 5x3] [--fixtures DIR] [--readme] [--smoke]

Fixtures (written once into --fixtures DIR and reused, else into a temporary folder removed
at the end): a 10 s 1280x720 clip at 30 fps with moving content (OpenCV, mp4v), and a
ViT-B/16 classifier (400 classes, seeded random weights) saved as a transformers folder.

Ours: the command `videomae-keras predict CLIP --weights FOLDER --views 5x3 --json` as a
subprocess, once per Keras backend (KERAS_BACKEND), with `--decoder` the one the
transformers side decodes with (what `auto` tries first) and its defaults otherwise (batch
4, XLA on jax and tensorflow, eager torch). `--top-k` is the number of classes,
so that the whole averaged probability vector comes back for the agreement check.

transformers: a child process of this script that loads the same folder with
`VideoMAEForVideoClassification.from_pretrained`, decodes the same frames with
`transformers.video_utils.load_video` (the decoder our "auto" picks first: decord, else
PyAV, else OpenCV), the frame indices being the official dense 5-clip test's (stride 4, as
our sampler picks them), runs transformers' processor once over the distinct frames (the
video processor when torchvision is installed, else VideoMAEImageProcessorPil; shortest
edge to 224, ImageNet mean and std, centre crop off), cuts the 3 crops along the long side
by slicing, and runs the model on the 15 views in batches of 4 under torch.inference_mode,
averaging the softmax over the views.

Both sides are timed the same two ways: the whole process (interpreter start and imports
included; the headline ratio), and the work after the imports (loading the checkpoint,
then decode + pre-processing + model; for ours, the two stage times the command prints).
Each run is a fresh process; variants take turns, and the median of --repeats runs is kept.
The top-5 classes of both sides and the largest difference of their averaged probabilities
show that both did the same work. Writes bench/results/predict_e2e.json; --readme puts its
table into README.md; --smoke runs a tiny clip and model on one backend and only prints.
"""

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

BEGIN, END = "<!-- predict_e2e:begin -->", "<!-- predict_e2e:end -->"
CLIP = {"seconds": 10, "width": 1280, "height": 720, "fps": 30}
VIT_B = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
         "intermediate_size": 3072, "num_labels": 400, "use_mean_pooling": True}
# --smoke: a 3 s 96x64 clip and a one-block model on 32x32, 4-frame clips (seconds, not minutes)
SMOKE_CLIP = {"seconds": 3, "width": 96, "height": 64, "fps": 10}
SMOKE_MODEL = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
               "intermediate_size": 64, "num_labels": 10, "use_mean_pooling": True,
               "image_size": 32, "num_frames": 4}
SAMPLING_RATE = 4  # the dense test's frame stride, the command's default
BATCH_SIZE = 4  # views per model call, the command's default
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGE = re.compile(r"\] (loading|predicting) .*: done in ([0-9.]+)s$")


def dense_test_indices(length, clips, clip_len, stride=SAMPLING_RATE):
    """(clips, clip_len) frame numbers of the official dense multi-clip test: every
    `stride`-th frame (the last repeated up to clip_len), clip k starting int(k * spare /
    (clips - 1)) along them (the middle for one clip). The same as our DenseSampler.test;
    written out here so that the transformers child imports nothing of ours."""
    strided = list(range(0, length, stride))
    strided += [strided[-1]] * (clip_len - len(strided))
    spare = len(strided) - clip_len
    if clips == 1:
        starts = [int(max(spare, 0) / 2)]
    else:
        starts = [int(k * max(spare / (clips - 1), 0.0)) for k in range(clips)]
    return np.array([strided[s : s + clip_len] for s in starts], np.int64)


def first_decoder():
    """The decoder `--decoder auto` tries first (decord, PyAV, OpenCV), found without
    importing any of them; the transformers child decodes with the same one."""
    for name, module in (("decord", "decord"), ("pyav", "av")):
        if importlib.util.find_spec(module) is not None:
            return name
    return "opencv"


# ---------------------------------------------------------------- fixtures


def write_clip(path, seconds, width, height, fps):
    """An mp4v clip with a smooth textured background, a disc moving right, a bar moving
    down and the frame number, written one frame at a time (a 10 s 720p clip is 830 MB as
    one array)."""
    import cv2

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (height, width, 3)).astype(np.float32)
    base = cv2.GaussianBlur(noise, (0, 0), max(width / 200, 1.0))
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    count = int(seconds * fps)
    temp = path + ".tmp.mp4"
    out = cv2.VideoWriter(temp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not out.isOpened():
        raise SystemExit("OpenCV cannot write mp4v here.")
    radius = max(height // 8, 2)
    for t in range(count):
        frame = base.copy()
        x = int(radius + (width - 2 * radius) * t / max(count - 1, 1))
        cv2.circle(frame, (x, height // 3), radius, (10, 40, 255), -1)
        top = int((height - radius) * ((t * 7) % count) / count)
        cv2.rectangle(frame, (width // 2, top), (width // 2 + 2 * radius, top + radius),
                      (90, 200, 20), -1)
        cv2.putText(frame, str(t), (width // 20, height - height // 10),
                    cv2.FONT_HERSHEY_SIMPLEX, height / 240, (255, 255, 255),
                    max(height // 120, 1))
        out.write(frame)
    out.release()
    os.replace(temp, path)


def make_model(config, target):
    """A seeded random-weight VideoMAEForVideoClassification saved with save_pretrained
    (run in a child, so that this process never imports torch)."""
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.VideoMAEForVideoClassification(transformers.VideoMAEConfig(**config))
    model.eval().save_pretrained(target + ".tmp")
    os.replace(target + ".tmp", target)
    return {"written": target}


def fixtures(folder, clip, model):
    """(clip path, model folder), each written unless already in `folder`."""
    video = os.path.join(folder, "clip-{width}x{height}-{seconds}s-{fps}fps.mp4".format(**clip))
    if not os.path.exists(video):
        print(f"[fixtures] {os.path.basename(video)} ...", file=sys.stderr, flush=True)
        write_clip(video, **clip)
    name = "hf-B" if model == VIT_B else "hf-smoke"  # hf-B: the same model as load.py's
    weights = os.path.join(folder, name)
    if not os.path.exists(os.path.join(weights, "config.json")):
        print(f"[fixtures] {name} ...", file=sys.stderr, flush=True)
        answer = _common.run_worker(os.path.abspath(__file__), "make-model",
                                    ["--config", json.dumps(model), "--target", weights])
        if "error" in answer:
            raise SystemExit(f"Cannot write the model: {answer['error']}")
    return video, weights


# ---------------------------------------------------------------- transformers' side


def _processor_class():
    """transformers' VideoMAE video processor where torchvision (which it needs) is
    installed, else its PIL image processor."""
    if importlib.util.find_spec("torchvision") is not None:
        from transformers import VideoMAEVideoProcessor

        return VideoMAEVideoProcessor
    from transformers.models.videomae.image_processing_pil_videomae import (
        VideoMAEImageProcessorPil,
    )

    return VideoMAEImageProcessorPil


def _process(processor_class, frames, size):
    """(T, C, H, W) float32 tensor: the processor over the frames as one video, shortest
    edge to `size`, no centre crop, ImageNet mean and std (as the released VideoMAE
    checkpoints' preprocessor configs say)."""
    processor = processor_class(size={"shortest_edge": size}, do_center_crop=False,
                                image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))
    video = frames if processor_class.__name__.endswith("VideoProcessor") else list(frames)
    return processor(video, return_tensors="pt")["pixel_values"][0]


def _views(pixels, indices, crops, size):
    """The (clips * crops) views, clip-major, from the processed distinct frames
    (T, C, H, W) in frame order: each clip's frames gathered, then `crops` windows along the
    long side at int(s * (long - size) / (crops - 1)) (the centre for one crop), the short
    side centred."""
    import torch

    height, width = pixels.shape[-2:]
    along_height = height - size >= width - size  # as our crop_boxes decides
    rows = _offsets(height, size, crops if along_height else 1)
    columns = _offsets(width, size, 1 if along_height else crops)
    boxes = [(top, left) for top in rows for left in columns]
    position = torch.as_tensor(np.searchsorted(np.unique(indices), indices))
    return torch.stack([pixels[position[c], :, top : top + size, left : left + size]
                        for c in range(len(indices)) for top, left in boxes])


def _offsets(length, size, count):
    """Where `count` windows of `size` start along `length` (the official spacing)."""
    spare = length - size
    if count == 1:
        return [spare // 2]
    return [int(s * spare / (count - 1)) for s in range(count)]


def _classify(model, data):
    """The model over the views in batches of BATCH_SIZE (the last one shorter)."""
    import torch

    return torch.cat([model(pixel_values=data[i : i + BATCH_SIZE]).logits
                      for i in range(0, len(data), BATCH_SIZE)])


def transformers_worker(video, folder, views, decoder):
    """The transformers pipeline once: load, decode, pre-process, model, average. Returns
    the stage seconds (imports apart) and the averaged probabilities."""
    begin = time.perf_counter()
    import torch
    from transformers import VideoMAEForVideoClassification
    from transformers.video_utils import load_video

    processor_class = _processor_class()  # transformers imports its modules when first used
    seconds = {"import_seconds": time.perf_counter() - begin}

    def stage(name, function):
        start = time.perf_counter()
        result = function()
        seconds[name + "_seconds"] = time.perf_counter() - start
        return result

    clips, crops = views
    with torch.inference_mode():
        model = stage("load", lambda: VideoMAEForVideoClassification.from_pretrained(folder)
                      .eval())
        config = model.config
        plan = {}

        def sample(metadata, **kwargs):
            plan["indices"] = dense_test_indices(metadata.total_num_frames, clips,
                                                 config.num_frames)
            return np.unique(plan["indices"]).tolist()

        frames, _ = stage("decode", lambda: load_video(video, backend=decoder,
                                                      sample_indices_fn=sample))
        data = stage("preprocess", lambda: _views(
            _process(processor_class, frames, config.image_size), plan["indices"], crops,
            config.image_size))
        logits = stage("model", lambda: _classify(model, data))
        probabilities = logits.double().softmax(-1).mean(0).numpy()
    seconds["work_seconds"] = sum(v for k, v in seconds.items() if k != "import_seconds")
    seconds["video_seconds"] = seconds["work_seconds"] - seconds["load_seconds"]
    return {**seconds, "probabilities": probabilities.tolist(),
            "processor": processor_class.__name__, "decoder": decoder,
            "frames_decoded": len(frames)}


# ---------------------------------------------------------------- runs


def _command():
    """The `videomae-keras` console command of this Python (else its module)."""
    script = os.path.join(os.path.dirname(sys.executable), "videomae-keras")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "videomae_keras_cli"]


def run_ours(backend, video, weights, views, num_labels, decoder):
    """`videomae-keras predict` once under KERAS_BACKEND=backend, with the decoder the
    transformers side uses: whole wall seconds, its loading and predicting stage times
    (from its progress lines) and the probabilities."""
    env = dict(os.environ, KERAS_BACKEND=backend)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    command = _command() + ["predict", video, "--weights", weights,
                            "--views", "{}x{}".format(*views), "--top-k", str(num_labels),
                            "--decoder", decoder, "--json"]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 3600 s"}
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-2:]
        return {"error": f"exit {done.returncode}: " + " | ".join(tail)}
    stages = dict(m.groups() for m in map(STAGE.search, done.stderr.splitlines()) if m)
    probabilities = np.zeros(num_labels)
    for item in json.loads(done.stdout)["top"]:
        probabilities[item["index"]] = item["probability"]
    load, video_seconds = float(stages["loading"]), float(stages["predicting"])
    return {"seconds": wall, "load_seconds": load, "video_seconds": video_seconds,
            "work_seconds": load + video_seconds, "probabilities": probabilities.tolist()}


def run_transformers(video, weights, views, decoder):
    """The transformers child once; its answer with the whole process's wall seconds."""
    start = time.perf_counter()
    answer = _common.run_worker(os.path.abspath(__file__), "transformers",
                                ["--video", video, "--source", weights,
                                 "--views", "{}x{}".format(*views), "--decoder", decoder])
    return {**answer, "seconds": time.perf_counter() - start} if "error" not in answer else answer


def measure(variants, video, weights, views, repeats, num_labels):
    """{variant: [answer per run]}, the variants taking turns in each round."""
    decoder = first_decoder()
    runs = {variant: [] for variant in variants}
    for round_ in range(repeats):
        for variant in variants:
            print(f"[{round_ + 1}/{repeats}] {variant} ...", file=sys.stderr, flush=True)
            if variant == "transformers":
                answer = run_transformers(video, weights, views, decoder)
            else:
                answer = run_ours(variant, video, weights, views, num_labels, decoder)
            runs[variant].append(answer)
    return runs


def summarize(runs, case, views):
    """One row per variant: medians over its runs, ratios to transformers, and how its
    probabilities compare with transformers' (top-5 classes, largest |difference|)."""
    keys = ("seconds", "work_seconds", "load_seconds", "video_seconds", "import_seconds",
            "decode_seconds", "preprocess_seconds", "model_seconds")
    reference = next((a for a in runs.get("transformers", []) if "probabilities" in a), None)
    rows = []
    for variant, answers in runs.items():
        good = [a for a in answers if "error" not in a]
        row = {"case": case, "views": "{}x{}".format(*views), "backend": variant,
               "runs": len(good), "walls": [a["seconds"] for a in good]}
        for key in keys:
            values = [a[key] for a in good if key in a]
            if values:
                row[key] = statistics.median(values)
        for key in ("processor", "decoder", "frames_decoded"):
            if good and key in good[0]:
                row[key] = good[0][key]
        if good:
            probabilities = np.asarray(good[0]["probabilities"])
            row["top5"] = np.argsort(-probabilities, kind="stable")[:5].tolist()
            if reference is not None and variant != "transformers":
                theirs = np.asarray(reference["probabilities"])
                row["top5_agrees"] = row["top5"] == np.argsort(-theirs, kind="stable")[:5].tolist()
                row["max_prob_diff"] = float(np.abs(probabilities - theirs).max())
        if len(good) < len(answers):
            row["error"] = next(a["error"] for a in answers if "error" in a)
        rows.append(row)
    _common.add_ratios(rows)
    return _common.add_ratios(rows, key="work_seconds", name="work_ratio")


# ---------------------------------------------------------------- output


def render(payload):
    """The end-to-end table as Markdown, with a line saying what was run."""
    setting = payload["setting"]
    lines = [f"{setting['clip']}, {setting['views']} views ({setting['model']}, batch "
             f"{BATCH_SIZE}); median of {setting['repeats']} run(s), each a fresh process. "
             "Whole process: interpreter start, imports, loading the checkpoint, decoding, "
             "pre-processing and the model; after imports: loading, then decode + "
             "pre-processing + model (ratio: ours / transformers; below 1 is faster).", ""]
    columns = [("backend", "variant"), ("seconds", "whole process (s)"),
               ("ratio", "whole / transformers"), ("work_seconds", "after imports (s)"),
               ("work_ratio", "after imports / transformers"), ("load_seconds", "load (s)"),
               ("video_seconds", "decode + pre-process + model (s)"),
               ("top5_agrees", "same top-5"), ("max_prob_diff", "largest probability difference"),
               ("error", "error")]
    return "\n".join(lines + [_common.table(payload["rows"], columns)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for hidden in ("--worker", "--video", "--source", "--target", "--config", "--decoder"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--backends", help="Keras backends to run ours on (default "
                        "jax,tensorflow,torch; torch with --smoke)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (default 3)")
    parser.add_argument("--views", default="5x3", help="clips x crops (default 5x3)")
    parser.add_argument("--fixtures", help="folder to keep the clip and the model in (reused)")
    parser.add_argument("--readme", action="store_true",
                        help="put the table of bench/results/predict_e2e.json into README.md")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny clip and model, one run, torch unless --backends is "
                        "given; prints the results and saves nothing")
    args = parser.parse_args()
    views = tuple(int(v) for v in args.views.lower().split("x"))
    if args.worker == "make-model":
        _common.emit(make_model(json.loads(args.config), args.target))
        return
    if args.worker == "transformers":
        _common.emit(transformers_worker(args.video, args.source, views, args.decoder))
        return
    if args.readme:
        _common.replace_readme_block(BEGIN, END, render(_common.load("predict_e2e")) + "\n")
        return
    clip, model = (SMOKE_CLIP, SMOKE_MODEL) if args.smoke else (CLIP, VIT_B)
    backends = args.backends or ("torch" if args.smoke else ",".join(_common.BACKENDS))
    repeats = 1 if args.smoke else args.repeats
    folder = args.fixtures or tempfile.mkdtemp(prefix="videomae-keras-e2e-")
    os.makedirs(folder, exist_ok=True)
    try:
        video, weights = fixtures(folder, clip, model)
        variants = ["transformers"] + [b for b in backends.split(",") if b]
        runs = measure(variants, video, weights, views, repeats, model["num_labels"])
    finally:
        if not args.fixtures:
            shutil.rmtree(folder, ignore_errors=True)
    setting = {"clip": "{seconds} s {width}x{height} at {fps} fps (mp4v)".format(**clip),
               "views": args.views, "repeats": repeats,
               "model": "ViT-B/16, 400 classes" if model == VIT_B else "tiny smoke model"}
    case = f"{setting['clip']}, {args.views}"
    payload = {"machine": _common.machine(), "setting": setting,
               "rows": summarize(runs, case, views),
               "command": _common.command()}
    print(render(payload))
    if args.smoke:
        _common.emit(payload)
        return
    path = _common.save("predict_e2e", payload)
    print(f"\nwritten: {os.path.relpath(path, _common.ROOT)}")


if __name__ == "__main__":
    main()
