"""Where a classifier looks: a heatmap over the token grid for one class, by attention
rollout or by Grad-CAM on the last block, upsampled and laid over the clip's frames.

- Rollout (Abnar & Zuidema 2020): each block's attention averaged over heads, mixed with
  the residual as 0.5 W + 0.5 I, multiplied through the blocks. VideoMAE classifiers
  mean-pool every token, so the relevance of token j is the mean over output positions of
  column j (1/N 1^T A_L ... A_1, computed as a vector from the top down); first-token
  classifiers read row 0. It does not depend on the class.
- Grad-CAM (Selvaraju et al. 2017) in its element-wise form (pytorch-grad-cam's
  GradCAMElementWise) on tokens: A = the last block's attention input (its norm1 output,
  the layer pytorch-grad-cam takes for ViTs), G = the gradient of the class's logit at A,
  map_i = sum_k ReLU(G_ik A_ik). Gradients come from the backend's own autodiff.
  Measured on the synthetic clips (mass on the moving shape over its share of the frame):
  the classic form, ReLU(A mean_i(G)), gave an earlier demo classifier 1.52 but three
  random-weight models 1.15-1.80 on jax: it follows salient shapes whatever the weights. The
  element-wise form gives the shipped one 1.37 (64 clips; 16 are too few) against 0.83-1.14
  for random weights (16 clips each) on every backend. At the encoder's
  output every token gets the same gradient under mean pooling; before norm1 the classic
  map avoided the shape (0.48).
"""

import dataclasses
import os

import numpy as np

import keras

from videomae_keras import kernels
from videomae_keras.inference import load_views, model_clip_shape, resolve_labels
from videomae_keras.pictures import (
    captioned,
    enlarge,
    gapped,
    labelled,
    save_gif,
    save_mp4,
    save_png,
    to_uint8,
)
from videomae_keras.video.preprocess import unnormalize

METHODS = ("rollout", "gradcam")
METHOD_NAMES = {"rollout": "attention rollout", "gradcam": "Grad-CAM"}
ROW_NAMES = {"rollout": "rollout", "gradcam": "Grad-CAM"}
OVERLAY_ALPHA = 0.5


@dataclasses.dataclass
class Explanation:
    """One clip, the class explained and where the model looked.

    heatmap: (T', H', W') float32 in [0, 1] over the token grid (1 = most relevant).
    frames: (T, H, W, 3) float32 RGB in [0, 1]: the clip as the model saw it.
    """

    heatmap: np.ndarray
    frames: np.ndarray
    target: int
    label: str
    probability: float
    method: str
    frame_indices: np.ndarray
    source: str
    tubelet_size: int = 2

    def pixel_heatmap(self):
        """(T, H, W) float32: the heatmap upsampled to the frames (bilinear in space, each
        token's value over its tubelet's frames)."""
        import cv2

        height, width = self.frames.shape[1:3]
        planes = [cv2.resize(plane.astype(np.float32), (width, height),
                             interpolation=cv2.INTER_LINEAR) for plane in self.heatmap]
        return np.clip(np.repeat(np.stack(planes), self.tubelet_size, axis=0), 0.0, 1.0)

    def overlay(self, alpha=OVERLAY_ALPHA):
        """uint8 (T, H, W, 3): the frames with the heatmap in colour (JET) laid over them."""
        import cv2

        heat = (self.pixel_heatmap() * 255.0 + 0.5).astype(np.uint8)
        colours = np.stack([cv2.cvtColor(cv2.applyColorMap(h, cv2.COLORMAP_JET),
                                         cv2.COLOR_BGR2RGB) for h in heat])
        mixed = (1 - alpha) * to_uint8(self.frames) + alpha * colours
        return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)

    @property
    def caption(self):
        return (f"{self.label} ({self.probability:.0%}), {METHOD_NAMES[self.method]}")

    def grid(self, frame_step=None):
        """uint8 picture: the clip and the overlay as two named rows, one column per shown
        frame (every `frame_step`-th, default the tubelet size), the class, its probability
        and the method written above them."""
        step = frame_step or self.tubelet_size
        rows = [gapped(list(enlarge(frames)[::step]))
                for frames in (to_uint8(self.frames), self.overlay())]
        return captioned(labelled(rows, ("clip", ROW_NAMES[self.method])), self.caption)

    def animation_frames(self):
        """uint8 (T, H', W', 3): clip and overlay side by side per frame, captioned."""
        clip, overlay = enlarge(to_uint8(self.frames)), enlarge(self.overlay())
        return np.stack([captioned(gapped([a, b]), self.caption)
                         for a, b in zip(clip, overlay)])

    def save_png(self, path, overwrite=False, frame_step=None):
        return save_png(self.grid(frame_step), path, overwrite)

    def save_gif(self, path, overwrite=False, fps=4.0):
        return save_gif(self.animation_frames(), path, overwrite, fps)

    def save_mp4(self, path, overwrite=False, fps=4.0):
        """The animation as an MP4; RuntimeError where OpenCV has no MP4 writer."""
        frames = self.animation_frames()
        even = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
        return save_mp4(even, path, overwrite, fps)

    def mass_on(self, region):
        """The share of the pixel heatmap's mass inside `region` ((T, H, W) bool) over the
        region's share of the pixels: 1 for a map that ignores the region, above 1 for one
        that looks at it."""
        heat = self.pixel_heatmap()
        region = np.asarray(region, bool)
        if region.shape != heat.shape:
            raise ValueError(f"region must be (T, H, W) = {heat.shape}; got {region.shape}.")
        return float((heat[region].sum() / max(heat.sum(), 1e-12)) / max(region.mean(), 1e-12))


def explain_video(model, video, target=None, method="gradcam", labels=None, sampling_rate=4,
                  interpolation="bilinear", backend="auto"):
    """Explains a classifier's decision on the centre clip (dense, stride `sampling_rate`,
    centre crop) of `video` (a file or decoded frames (T, H, W, C)).

    `target`: a class index or name; default the predicted class. `method`: "rollout" or
    "gradcam" (the default). `labels`: class names as for `predict_video` (default the
    model's own).
    Returns an `Explanation` (`save_png`, `save_gif`, `save_mp4`).
    """
    from videomae_keras.models import VideoMAEClassifier

    if not isinstance(model, VideoMAEClassifier) or not model.arguments()["num_classes"]:
        raise ValueError(f"explain needs a classifier with a head (VideoMAEClassifier, e.g. "
                         f"from_pretrained of a fine-tuned checkpoint); got "
                         f"{type(model).__name__}.")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}.")
    num_classes = model.arguments()["num_classes"]
    own = getattr(model, "class_names", None)
    names = list(own) if labels is None and own else resolve_labels(labels, num_classes)
    frames, height, width = model_clip_shape(model)
    views = load_views(video, frames, (height, width), (1, 1), "dense", sampling_rate,
                       interpolation, backend)
    clip = keras.ops.convert_to_tensor(views.data[:1])
    last_input, output, mixes = _encode(model, clip, attention=method == "rollout")
    with kernels.no_gradients():
        logits = keras.ops.convert_to_numpy(_logits_from_tokens(model, output))[0]
    logits = logits.astype(np.float64)
    index = _target_index(target, names, num_classes, logits)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    relevance = (_rollout(model, mixes) if method == "rollout"
                 else _gradcam(model, last_input, index))
    return Explanation(
        heatmap=_normalised(relevance.reshape(model.grid)),
        frames=unnormalize(views.data[0]),
        target=index,
        label=names[index] if names else f"class {index}",
        probability=float(probabilities[index]),
        method=method,
        frame_indices=views.frame_indices[0],
        source=views.source,
        tubelet_size=model.architecture["tubelet_size"],
    )


def _target_index(target, names, num_classes, logits):
    if target is None:
        return int(np.argmax(logits))
    if isinstance(target, str) and not target.isdigit():
        if not names or target not in names:
            known = f" (one of: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''})" \
                if names else ""
            raise ValueError(f"target {target!r} is not a class name of this model{known}; "
                             "pass a class name or index.")
        return names.index(target)
    index = int(target)
    if not 0 <= index < num_classes:
        raise ValueError(f"target must be a class index from 0 to {num_classes - 1}; got "
                         f"{target!r}.")
    return index


def _encode(model, clip, attention=False):
    """One pass through the encoder without gradients: (the last block's input, the last
    block's output, one (N, N) head-mean attention per block as float64 numpy when
    `attention`, else None). The logits, the rollout and Grad-CAM all start from it, so an
    explanation runs the encoder once (Grad-CAM then reruns only the last block)."""
    encoder = model.encoder
    mixes = [] if attention else None
    with kernels.no_gradients():
        x = encoder.embed(clip)
        for block in encoder.blocks:
            last_input = x
            if attention:
                x, weights = block.call_with_attention(x)
                mean = keras.ops.mean(keras.ops.cast(weights[0], "float32"), axis=0)
                mixes.append(keras.ops.convert_to_numpy(mean).astype(np.float64))
            else:
                x = block(x)
    return last_input, x, mixes


def _rollout(model, mixes):
    """(N,) relevance of each token by attention rollout over the blocks' head-mean
    attention `mixes` (from `_encode`), read out as the classifier pools."""
    num_tokens = mixes[0].shape[0]
    if model.arguments()["use_mean_pooling"]:
        relevance = np.full(num_tokens, 1.0 / num_tokens)
    else:  # the first token's row
        relevance = np.eye(num_tokens)[0]
    for mix in reversed(mixes):  # r (0.5 W + 0.5 I), from the top block down
        relevance = 0.5 * (relevance @ mix) + 0.5 * relevance
    return relevance


def _gradcam(model, x, index):
    """(N,) element-wise Grad-CAM relevance for class `index` at the last block's attention
    input (its norm1 output, the layer pytorch-grad-cam takes for ViTs); `x` is the last
    block's input (from `_encode`)."""
    last = model.encoder.blocks[-1]
    with kernels.no_gradients():
        tokens = keras.ops.cast(last.norm1(x), "float32")

    def score(tokens):
        y = last.call_with_attention_input(x, keras.ops.cast(tokens, x.dtype))
        return _logits_from_tokens(model, y)[0, index]

    _, gradient = kernels.value_and_gradient(score, tokens)
    tokens = keras.ops.convert_to_numpy(tokens)[0].astype(np.float64)
    gradient = keras.ops.convert_to_numpy(gradient)[0].astype(np.float64)
    return np.maximum(tokens * gradient, 0.0).sum(axis=1)


def _logits_from_tokens(model, tokens):
    """The classifier's head over the encoder's last block output: final norm (where the
    encoder has one), pooling, fc_norm (mean pooling), head."""
    if model.encoder.norm is not None:
        tokens = model.encoder.norm(tokens)
    x = model.get_layer("pool")(tokens)
    if model.arguments()["use_mean_pooling"]:
        x = model.get_layer("fc_norm")(x)
    return keras.ops.cast(model.get_layer("head")(x), "float32")


def _normalised(heatmap):
    """Min-max to [0, 1]; a constant map becomes zeros."""
    heatmap = np.asarray(heatmap, np.float64)
    low, high = heatmap.min(), heatmap.max()
    if high - low <= 1e-12 * max(abs(high), 1.0):
        return np.zeros(heatmap.shape, np.float32)
    return ((heatmap - low) / (high - low)).astype(np.float32)


def default_paths(video, out, method):
    """OUT/STEM.METHOD.{png,gif,mp4} for a video file (or "clip" for frames)."""
    stem = (os.path.splitext(os.path.basename(video))[0]
            if isinstance(video, (str, os.PathLike)) else "clip")
    return {kind: os.path.join(out, f"{stem}.{method}.{kind}") for kind in ("png", "gif", "mp4")}
