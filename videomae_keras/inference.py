"""A video in, labels or features out: the official multi-view test protocol around a model.

`predict_video` samples clips (dense "16x5x3" for Kinetics-style heads, segment-based
"16x2x3" for Something-Something v2), crops each clip (three crops along the long side),
runs the views through the model in batches and averages the per-view softmax
probabilities, as the official test does. `extract_features` gives the pooled embedding and
the token features of the same views.
"""

import dataclasses
import os
import warnings
import weakref

import numpy as np

import keras

from videomae_keras import presets
from videomae_keras.configs import IMAGENET_MEAN, IMAGENET_STD
from videomae_keras.options import parse_views
from videomae_keras.progress import Stages
from videomae_keras.video.io import VideoReader, to_rgb
from videomae_keras.video.preprocess import crop_and_normalize, resize_short_side
from videomae_keras.video.sampling import get_sampler


@dataclasses.dataclass
class ClipViews:
    """Model-ready views of one video, clip-major: view v is clip v // crops, crop v % crops."""

    data: np.ndarray  # (clips * crops, T, H, W, 3) float32
    frame_indices: np.ndarray  # (clips, T) frame numbers in the source video
    views: tuple  # (clips, crops)
    sampling: str
    num_video_frames: int
    source: str


def model_clip_shape(model):
    """(frames, height, width) a VideoMAE model takes (height, width go to `load_views` as
    the image size)."""
    shape = model.inputs[0].shape
    if len(shape) != 5 or None in shape[1:4]:
        raise ValueError(f"Expected a video model with a (B, T, H, W, 3) input; got {shape}.")
    return tuple(int(s) for s in shape[1:4])


def default_sampling(num_classes=None, label_map=None):
    """"segment" for Something-Something v2 heads (174 classes), else "dense"."""
    if label_map == "ssv2" or num_classes == 174:
        return "segment"
    return "dense"


def load_views(
    video,
    num_frames=16,
    image_size=224,
    views=None,
    sampling="dense",
    sampling_rate=4,
    interpolation="bilinear",
    backend="auto",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
):
    """Decodes the frames the views need (each once) and pre-processes them.

    `video`: a file path, or frames (T, H, W, C) already decoded. Returns `ClipViews`.
    """
    sampler = get_sampler(sampling, num_frames, sampling_rate)
    clips, crops = parse_views(views) or sampler.default_views()
    def plan(length):
        return np.unique(sampler.test(length, clips))

    if isinstance(video, (str, os.PathLike)):
        source = os.fspath(video)
        with VideoReader(source, backend) as reader:
            # a header that over-counts is corrected while reading, and the clips re-planned
            frames = reader.read_clip(plan(len(reader)), replan=plan)
            length = len(reader)
    else:
        source = "<frames>"
        all_frames = to_rgb(video)
        length = len(all_frames)
        frames = all_frames[plan(length)]
    indices = sampler.test(length, clips)
    unique = np.unique(indices)
    resized = resize_short_side(frames, image_size, interpolation)
    position = np.searchsorted(unique, indices)
    data = np.concatenate(
        [crop_and_normalize(resized[position[c]], image_size, crops, mean, std)
         for c in range(clips)]
    )
    return ClipViews(data, indices, (clips, crops), sampler.name, length, source)


def resolve_labels(labels, num_classes):
    """Class names for a head: a list as given, a shipped label map name ("kinetics400",
    "ssv2", "ucf101"), a text file with one name per line, None for the map a head of this
    size most likely uses, or False for indices only."""
    if labels is False:
        return None
    if labels is None:
        name = presets.labels_for(num_classes)
        return list(presets.labels(name)) if name else None
    if isinstance(labels, (str, os.PathLike)):
        text = os.fspath(labels)
        if os.path.isfile(text):
            with open(text, encoding="utf-8") as f:
                names = [line.rstrip("\n") for line in f if line.strip()]
        else:
            names = list(presets.labels(text))
    else:
        names = [str(n) for n in labels]
    if len(names) != num_classes:
        raise ValueError(
            f"The label map has {len(names)} names but the model has {num_classes} classes."
        )
    return names


@dataclasses.dataclass
class VideoPrediction:
    """Top classes of a video, with the averaged and per-view probabilities."""

    source: str
    top: list  # [{"rank", "index", "label", "probability"}]
    probabilities: np.ndarray  # (num_classes,) averaged over views
    view_probabilities: np.ndarray  # (views, num_classes)
    views: tuple
    sampling: str
    frame_indices: np.ndarray

    @property
    def label(self):
        """The best class's name (or index when the label map is unknown)."""
        best = self.top[0]
        return best["label"] if best["label"] is not None else best["index"]

    def to_dict(self):
        return {
            "video": self.source,
            "views": f"{self.views[0]}x{self.views[1]}",
            "sampling": self.sampling,
            "top": self.top,
        }

    def __str__(self):
        lines = [f"{self.source} ({self.views[0]}x{self.views[1]} views, {self.sampling})"]
        for item in self.top:
            name = item["label"] if item["label"] is not None else f"class {item['index']}"
            lines.append(f"  {item['rank']}. {name:<40} {item['probability']:.4f}")
        return "\n".join(lines)


def _softmax(logits):
    logits = np.asarray(logits, np.float64)
    logits = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)


def optimize_for_inference(model, jit_compile="auto", int8=False):
    """Prepares `model.predict_on_batch` (what predict_video, extract_features and
    reconstruct_video call) for speed and returns the model.

    `jit_compile`: True compiles the call (XLA on jax and tensorflow, torch.compile on
    torch), False runs eagerly, "auto" compiles except on torch (where compiling takes longer
    than a handful of clips save). `int8=True` quantizes the Dense weights to int8 (Keras
    `quantize("int8")`; on torch on the CPU the int8 layers run PyTorch's dynamic quantized
    linear, 1.3x faster than float32 for ViT-B without AVX-512 VNNI, 2.1x with it); where
    int8 is no faster than float32 (jax and tensorflow on an x86 CPU without VNNI) it warns
    in one line and says which path is. `python bench/quantize.py` measures what int8 costs
    in accuracy; `port --format onnx-int8` gives the fastest int8 path (onnxruntime, with
    or without VNNI).
    """
    if int8:
        from videomae_keras import kernels

        note = kernels.slow_int8_note()
        if note:
            warnings.warn(note, stacklevel=2)
        from videomae_keras.models.base import quantize_remaining

        quantize_remaining(model, "int8")
    if jit_compile == "auto":
        jit_compile = keras.backend.backend() != "torch"
    model.compile(jit_compile=bool(jit_compile))
    return model


def run_batched(model, data, batch_size=4, progress=None, description="views",
                keep_batch_size=False):
    """`model` over `data` in fixed-size batches (the last one padded, so a jitted model
    compiles once); returns the outputs as numpy (a dict stays a dict). Fewer items than
    `batch_size` make one smaller batch, unless `keep_batch_size` (callers that feed one
    model batch after batch: the shape stays the one compiled)."""
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number of at least 1; got {batch_size!r}.")
    batch_size = int(batch_size) if keep_batch_size else min(int(batch_size), len(data))
    bar = (progress or Stages(0, enabled=False)).bar(len(data), description, unit="view")
    outputs = []
    try:
        for start in range(0, len(data), batch_size):
            chunk = data[start : start + batch_size]
            count = len(chunk)
            if count < batch_size:
                pad = np.repeat(chunk[-1:], batch_size - count, axis=0)
                chunk = np.concatenate([chunk, pad])
            result = model.predict_on_batch(chunk)
            if isinstance(result, dict):
                outputs.append({k: np.asarray(v)[:count] for k, v in result.items()})
            else:
                outputs.append(np.asarray(result)[:count])
            bar.update(count)
    finally:
        bar.close()
    if outputs and isinstance(outputs[0], dict):
        return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
    return np.concatenate(outputs)


def _check_classifier(model):
    from videomae_keras.models import VideoMAEClassifier

    if isinstance(model, VideoMAEClassifier):
        # arguments(), not get_config(): serialising the backbone imports TensorFlow (seconds)
        num_classes = model.arguments()["num_classes"]
        if num_classes <= 0:
            raise ValueError("This classifier has no head (num_classes=0); use extract_features.")
        return num_classes
    output = model.outputs[0].shape if getattr(model, "outputs", None) else None
    if len(model.inputs) != 1 or output is None or len(output) != 2:
        raise ValueError(
            f"predict_video needs a fine-tuned classifier (video -> logits); {model.name} "
            f"takes {len(model.inputs)} input(s) and returns {output}. Pretraining models "
            "go to reconstruct_video, backbones to extract_features."
        )
    return int(output[-1])


def predict_video(
    model,
    video,
    views=None,
    top_k=5,
    labels=None,
    sampling=None,
    sampling_rate=4,
    batch_size=4,
    interpolation="bilinear",
    backend="auto",
    progress=False,
):
    """Classifies a video with the official multi-view test.

    Args:
        model: a fine-tuned classifier (e.g. `from_pretrained(...)`, `VideoMAE_ViTB16FT`).
        video: a video file, or decoded frames (T, H, W, C).
        views: (clips, crops) or "5x3"; default 5x3 for dense sampling, 2x3 for segment.
        top_k: how many classes to return.
        labels: class names: None takes the model's own (`class_names`, saved with models
            fine-tuned or ported here), else the shipped map by head size (Kinetics-400 for
            400, SSv2 for 174, UCF101 for 101); or a list, a label map name, a text file, or
            False for indices only.
        sampling: "dense" (stride `sampling_rate`), "segment" (SSv2) or "uniform"; default
            "segment" for 174-class heads, else "dense".
        batch_size: views per model call.
        progress: show a progress bar (True, or a `Stages` object).

    Returns a `VideoPrediction`: `top` holds rank, index, label and probability, where the
    probability is the softmax averaged over the views.
    """
    if isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1:
        raise ValueError(f"top_k must be a whole number of at least 1; got {top_k!r}.")
    num_classes = _check_classifier(model)
    own = getattr(model, "class_names", None)  # saved with the model
    if labels is None and own:
        names, label_map = list(own), None
    else:
        names = resolve_labels(labels, num_classes)
        label_map = presets.labels_for(num_classes) if labels is None else labels
    sampling = sampling or default_sampling(num_classes, label_map)
    frames, height, width = model_clip_shape(model)
    stages = _stages(progress)
    clip_views = load_views(video, frames, (height, width), views, sampling, sampling_rate,
                            interpolation, backend)
    logits = run_batched(model, clip_views.data, batch_size, stages, "classifying")
    view_probabilities = _softmax(logits)
    probabilities = view_probabilities.mean(axis=0)
    order = np.argsort(-probabilities, kind="stable")[: int(top_k)]
    top = [
        {
            "rank": rank + 1,
            "index": int(i),
            "label": names[i] if names else None,
            "probability": float(probabilities[i]),
        }
        for rank, i in enumerate(order)
    ]
    return VideoPrediction(
        clip_views.source, top, probabilities.astype(np.float32),
        view_probabilities.astype(np.float32), clip_views.views, clip_views.sampling,
        clip_views.frame_indices,
    )


def _stages(progress):
    if isinstance(progress, Stages):
        return progress
    return Stages(0, enabled=bool(progress))


@dataclasses.dataclass
class VideoFeatures:
    """Per-view features of a video: the pooled embedding and (optionally) every token."""

    source: str
    pooled: np.ndarray  # (views, D): fc_norm(mean of tokens) for classifiers, else the mean
    tokens: np.ndarray  # (views, N, D), or None
    views: tuple
    sampling: str
    frame_indices: np.ndarray

    @property
    def embedding(self):
        """The pooled feature averaged over the views, (D,)."""
        return self.pooled.mean(axis=0)


_FEATURE_MODELS = weakref.WeakKeyDictionary()


def feature_model(model):
    """A Keras model video -> {"pooled", "tokens"} sharing `model`'s weights (built once per
    model, then reused).

    Tokens are the encoder outputs for all N tokens (after the final norm where the model has
    one). Pooled is what a classifier's head sees (fc_norm of the token mean, or the first
    token); for backbones and pretraining models, the token mean.
    """
    from videomae_keras.layers import TokenPooling
    from videomae_keras.models import VideoMAEClassifier

    if model in _FEATURE_MODELS:
        return _FEATURE_MODELS[model]
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        raise ValueError(f"{model.name} is not a VideoMAE model (it has no encoder).")
    video = keras.Input(model.inputs[0].shape[1:], name="video")
    tokens = encoder(video)
    if isinstance(model, VideoMAEClassifier):
        pooled = model.get_layer("pool")(tokens)
        if model.arguments()["use_mean_pooling"]:
            pooled = model.get_layer("fc_norm")(pooled)
    else:
        pooled = TokenPooling("mean", name="pool")(tokens)
    extractor = keras.Model(video, {"pooled": pooled, "tokens": tokens},
                            name=f"{model.name}_features")
    _FEATURE_MODELS[model] = extractor
    return extractor


def extract_features(
    model,
    video,
    views=(1, 1),
    tokens=True,
    sampling="dense",
    sampling_rate=4,
    batch_size=4,
    interpolation="bilinear",
    backend="auto",
    progress=False,
):
    """Features of a video's views (default one centre clip, centre crop).

    `model`: any VideoMAE model (classifier, backbone or pretraining model; the encoder runs
    on all tokens). Returns `VideoFeatures` with `pooled` (views, D), `tokens` (views, N, D)
    unless `tokens=False`, and `embedding`, the pooled feature averaged over views.
    """
    frames, height, width = model_clip_shape(model)
    clip_views = load_views(video, frames, (height, width), views, sampling, sampling_rate,
                            interpolation, backend)
    extractor = feature_model(model)
    outputs = run_batched(extractor, clip_views.data, batch_size, _stages(progress), "features")
    return VideoFeatures(
        clip_views.source,
        outputs["pooled"].astype(np.float32),
        outputs["tokens"].astype(np.float32) if tokens else None,
        clip_views.views,
        clip_views.sampling,
        clip_views.frame_indices,
    )
