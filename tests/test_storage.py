"""Annotation lists and videos by fsspec URL (videomae_keras/storage.py): the same samples,
clips and training as from the local disk, with fsspec's in-memory filesystem standing in
for a bucket."""

import os
import uuid

import fsspec
import numpy as np
import pytest

from videomae_keras import storage
from videomae_keras.data import VideoClipDataset, make_synthetic_dataset
from videomae_keras.data.annotations import AnnotationError, check_annotations
from videomae_keras.masking import TubeMaskingGenerator
from videomae_keras.video.io import VideoError, VideoReader, read_video

pytestmark = pytest.mark.backend_independent


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    """The synthetic data set on disk and the same files under memory://<random>/."""
    folder = tmp_path_factory.mktemp("data")
    lists = make_synthetic_dataset(folder, train_per_class=2, val_per_class=0, frames=24,
                                   seed=5)
    root = f"memory://videomae-test-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    for name in os.listdir(folder / "videos"):
        fs.pipe(f"{root[len('memory://'):]}/videos/{name}",
                (folder / "videos" / name).read_bytes())
    fs.pipe(f"{root[len('memory://'):]}/train.txt", open(lists["train"], "rb").read())
    yield lists, root
    fs.rm(root[len("memory://"):], recursive=True)


def test_paths_and_urls_are_told_apart():
    assert storage.is_url("gs://bucket/a.mp4") and storage.is_url("memory://x/y")
    assert storage.is_url("s3+https://x/y")
    assert not storage.is_url("/data/a.mp4") and not storage.is_url("file:///data/a.mp4")
    assert not storage.is_url("videos/a b://c.mp4")
    assert storage.join("gs://b/lists/", "videos/a.mp4") == "gs://b/lists/videos/a.mp4"
    assert storage.join("gs://b/lists", "gs://c/a.mp4") == "gs://c/a.mp4"
    assert storage.join("gs://b/lists", "/local/a.mp4") == "/local/a.mp4"
    assert storage.dirname("gs://b/lists/train.txt") == "gs://b/lists"


def test_a_list_in_a_bucket_gives_the_local_samples_and_clips(bucket):
    lists, root = bucket
    local = check_annotations(lists["train"])
    remote = check_annotations(f"{root}/train.txt")  # every video opened through fsspec
    assert [label for _, label in remote] == [label for _, label in local]
    assert all(path.startswith(f"{root}/videos/") for path, _ in remote)
    with VideoReader(remote[0][0]) as reader:
        assert reader.backend == "pyav" and len(reader) == 24
    np.testing.assert_array_equal(read_video(remote[0][0]), read_video(local[0][0],
                                                                       backend="pyav"))
    masks = TubeMaskingGenerator((2, 2, 2), 0.75)
    kwargs = dict(mode="pretrain", num_frames=4, image_size=32, batch_size=4, sampling_rate=2,
                  mask_generator=masks, seed=3)
    (video_a, mask_a), = VideoClipDataset(local, **kwargs)[1]
    (video_b, mask_b), = VideoClipDataset(remote, **kwargs)[1]
    np.testing.assert_array_equal(mask_a, mask_b)
    np.testing.assert_allclose(video_a, video_b, atol=1e-6)


def test_missing_files_in_a_bucket_are_one_line(bucket):
    _, root = bucket
    with pytest.raises(VideoError, match=r"memory://.*/videos/none\.mp4: no such file\."):
        VideoReader(f"{root}/videos/none.mp4")
    with pytest.raises(FileNotFoundError, match="no such annotation file"):
        check_annotations(f"{root}/missing.txt")
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{root[len('memory://'):]}/broken.txt", b"videos/none.mp4 0\n")
    with pytest.raises(AnnotationError, match=r"broken\.txt:1: memory://.*none\.mp4: no such"):
        check_annotations(f"{root}/broken.txt")
    video = fs.ls(f"{root[len('memory://'):]}/videos", detail=False)[0].lstrip("/")
    with pytest.raises(ValueError, match="reads local files only"):
        VideoReader(f"memory://{video}", backend="opencv")


def test_pretraining_reads_its_list_and_videos_from_a_bucket(bucket, tmp_path):
    import keras

    from videomae_keras.training.run import pretrain

    lists, root = bucket
    common = dict(epochs=1, batch_size=4, num_frames=8, image_size=32, sampling_rate=2,
                  mask_ratio=0.75, workers=1, progress=False, base_lr=1e-3)
    remote = pretrain(f"{root}/train.txt", str(tmp_path / "remote"), "tiny", **common)
    local = pretrain(lists["train"], str(tmp_path / "local"), "tiny", **common)
    for a, b in zip(remote.weights, local.weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b),
                                   atol=1e-6, err_msg=a.path)
    assert remote.run_state.record["inputs"]["train_list"]["sha256"] == \
        local.run_state.record["inputs"]["train_list"]["sha256"]
