"""Linear probing: how much a frozen encoder's features already know. Pooled features of
every video in a train and a validation list are computed once and cached (in parts, so an
interrupted run resumes where it stopped), then a linear classifier is trained on them with
Keras and its top-1 accuracy reported.

The features are the model's pooled embedding of each video's centre clip (centre crop,
dense sampling): the token mean (after the encoder's final norm where it has one) for a
backbone or pretraining model, what the head sees for a classifier.
"""

import dataclasses
import hashlib
import json
import os

import numpy as np

import keras

from videomae_keras.atomic import atomic_output
from videomae_keras.data.annotations import label_names, read_annotations
from videomae_keras.inference import (
    _stages,
    feature_model,
    load_views,
    model_clip_shape,
    run_batched,
)

PART_SIZE = 64  # videos per cached part: what an interruption can lose at most


@dataclasses.dataclass
class ProbeResult:
    """What `linear_probe` measured; `head` is the trained classifier over raw pooled
    features (the standardisation folded into its weights)."""

    top1: float
    train_top1: float
    num_train: int
    num_val: int
    num_classes: int
    feature_dim: int
    epochs: int
    cache: str
    head: keras.Model
    class_names: list = None

    def to_dict(self):
        return {"val_top1": self.top1, "train_top1": self.train_top1,
                "num_train": self.num_train, "num_val": self.num_val,
                "num_classes": self.num_classes, "feature_dim": self.feature_dim,
                "epochs": self.epochs, "cache": self.cache, "class_names": self.class_names}

    def __str__(self):
        return (f"linear probe: top-1 {self.top1:.1%} on {self.num_val} validation videos "
                f"({self.train_top1:.1%} on {self.num_train} training videos, "
                f"{self.num_classes} classes, {self.feature_dim}-d features)")


def linear_probe(model, train_list, val_list, cache_dir=None, root=None, epochs=100,
                 batch_size=256, learning_rate=1e-2, weight_decay=1e-4, sampling_rate=4,
                 feature_batch_size=8, seed=0, backend="auto", progress=False):
    """Trains a linear classifier on `model`'s frozen pooled features of the videos in
    `train_list` and reports its top-1 accuracy on `val_list` (official `path label` lists;
    names as labels are taken from the train list, sorted).

    `cache_dir`: where the features are kept (default: `.probe-cache` beside the train
    list), under a folder named after the model's weights and the sampling, so another
    model never reads them; parts already there are reused. Returns a `ProbeResult`.
    """
    names = label_names(train_list, root)
    train = read_annotations(train_list, root, names)
    val = read_annotations(val_list, root, names)
    labels = [label for _, label in train + val]
    num_classes = len(names) if names else max(labels) + 1
    if min(labels) < 0 or (names is None and max(labels) >= num_classes):
        raise ValueError(f"labels must be class indices from 0; got {min(labels)}.")
    cache_dir = cache_dir or os.path.join(os.path.dirname(os.path.abspath(train_list)),
                                          ".probe-cache")
    folder = os.path.join(os.fspath(cache_dir), _fingerprint(model, sampling_rate))
    stages = _stages(progress)
    train_x = cached_features(model, [p for p, _ in train], os.path.join(folder, "train"),
                              sampling_rate, feature_batch_size, backend, stages)
    val_x = cached_features(model, [p for p, _ in val], os.path.join(folder, "val"),
                            sampling_rate, feature_batch_size, backend, stages)
    train_y = np.asarray([label for _, label in train])
    val_y = np.asarray([label for _, label in val])
    head = train_linear_head(train_x, train_y, num_classes, epochs, batch_size, learning_rate,
                             weight_decay, seed)
    return ProbeResult(
        top1=_top1(head, val_x, val_y), train_top1=_top1(head, train_x, train_y),
        num_train=len(train), num_val=len(val), num_classes=num_classes,
        feature_dim=int(train_x.shape[1]), epochs=int(epochs), cache=folder, head=head,
        class_names=names)


def cached_features(model, videos, folder, sampling_rate=4, batch_size=8, backend="auto",
                    stages=None):
    """(len(videos), D) pooled features, computed PART_SIZE videos at a time and each part
    written atomically into `folder`: a part on disk with the same videos is read back
    instead of computed, so a run stopped half-way resumes at the first missing part."""
    extractor = feature_model(model)
    frames, height, width = model_clip_shape(model)
    os.makedirs(folder, exist_ok=True)
    stages = stages or _stages(False)
    bar = stages.bar(len(videos), f"features ({os.path.basename(folder)})", unit="video")
    parts = []
    try:
        for number, start in enumerate(range(0, len(videos), PART_SIZE)):
            chunk = videos[start:start + PART_SIZE]
            path = os.path.join(folder, f"part-{number:05d}.npz")
            features = _read_part(path, chunk)
            if features is None:
                features = _compute(extractor, chunk, frames, (height, width), sampling_rate,
                                    batch_size, backend, bar)
                with atomic_output(path, overwrite=True, suffix=".npz") as temp:
                    np.savez(temp, features=features, videos=np.asarray(chunk))
            else:
                bar.update(len(chunk))
            parts.append(features)
    finally:
        bar.close()
    return np.concatenate(parts).astype(np.float32)


def _read_part(path, videos):
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as part:
            if list(part["videos"]) != list(videos):
                return None  # the list changed: computed again
            return part["features"]
    except (OSError, ValueError, KeyError):
        return None  # a damaged part is computed again


def _compute(extractor, videos, frames, image_size, sampling_rate, batch_size, backend, bar):
    out = []
    for start in range(0, len(videos), batch_size):
        group = videos[start:start + batch_size]
        clips = np.concatenate([
            load_views(v, frames, image_size, (1, 1), "dense", sampling_rate,
                       backend=backend).data for v in group])
        # run_batched pads a short last group, so a jitted extractor compiles once
        out.append(np.asarray(run_batched(extractor, clips, batch_size,
                                           keep_batch_size=True)["pooled"], np.float32))
        bar.update(len(group))
    return np.concatenate(out)


def train_linear_head(features, labels, num_classes, epochs=100, batch_size=256,
                      learning_rate=1e-2, weight_decay=1e-4, seed=0):
    """A Dense(num_classes) classifier trained with Keras (AdamW, cross-entropy) on features
    standardised with the training set's mean and std; returned over raw features, the
    standardisation folded into its kernel and bias."""
    features = np.asarray(features, np.float32)
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
    keras.utils.set_random_seed(seed)
    dense = keras.layers.Dense(num_classes, name="probe")
    head = keras.Sequential([keras.Input((features.shape[1],)), dense], name="linear_probe")
    head.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    head.fit((features - mean) / std, np.asarray(labels), epochs=int(epochs),
             batch_size=int(min(batch_size, len(features))), shuffle=True, verbose=0)
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in dense.weights)
    kernel = kernel / std[:, None]
    dense.set_weights([kernel, bias - mean @ kernel])
    return head


def _top1(head, features, labels):
    logits = np.asarray(head.predict_on_batch(np.asarray(features, np.float32)))
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


def _fingerprint(model, sampling_rate):
    """A name for the features of this model's weights at this sampling."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"arguments": _plain(model.arguments()), "class": type(model).__name__,
                              "sampling_rate": sampling_rate, "crop": "centre"},
                             sort_keys=True).encode())
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return f"{model.name}-{digest.hexdigest()[:16]}"


def _plain(value):
    return json.loads(json.dumps(value, default=str))


def save_probe(result, out, overwrite=False):
    """OUT/probe.keras (the head over pooled features) and OUT/probe.json (the report)."""
    os.makedirs(out, exist_ok=True)
    written = []
    path = os.path.join(out, "probe.keras")
    with atomic_output(path, overwrite=overwrite, suffix=".keras") as temp:
        result.head.save(temp)
    written.append(path)
    path = os.path.join(out, "probe.json")
    with atomic_output(path, overwrite=overwrite) as temp:
        with open(temp, "w", encoding="utf-8") as f:
            json.dump(result.to_dict(), f, indent=2)
    written.append(path)
    return written
