"""Reconstruction pictures: the patch layout against transformers' own patchify, the loss
against transformers' VideoMAEForPreTraining for the same weights, video and mask, and the
PNG / GIF outputs."""

import numpy as np
import pytest
import torch
from PIL import Image

import reference
from videomae_keras import VideoMAEClassifier, from_pretrained, reconstruct_video
from videomae_keras.inference import load_views
from videomae_keras.patches import patch_statistics, patchify, unpatchify
from videomae_keras.reconstruction import mask_for_model
from videos import moving_frames, write_video


def hf_patchify(video, tubelet, patch):
    """transformers' VideoMAEForPreTraining patchify: (B, T, C, H, W) view + permute."""
    b, t, c, h, w = video.shape
    x = video.view(b, t // tubelet, tubelet, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 1, 4, 6, 2, 5, 7, 3).contiguous()
    return x.view(b, (t // tubelet) * (h // patch) * (w // patch), tubelet * patch * patch, c)


def test_patchify_matches_transformers_layout():
    video = np.random.default_rng(0).standard_normal((2, 4, 16, 24, 3)).astype(np.float32)
    ours = patchify(video, 2, 8)
    theirs = hf_patchify(torch.from_numpy(video.transpose(0, 1, 4, 2, 3)), 2, 8).numpy()
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(unpatchify(ours, (4, 16, 24), 2, 8), video)
    mean, std = patch_statistics(ours)
    np.testing.assert_allclose(std[:, :, 0], ours.std(axis=-2, ddof=1) + 1e-6, rtol=1e-5)
    np.testing.assert_allclose(mean[:, :, 0], ours.mean(axis=-2), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pt")
    hf = reference.hf_model("pretrainer", seed=3, **reference.SMALL)
    hf.save_pretrained(folder / "hf")
    video = write_video(folder / "clip.mkv", moving_frames(40, 48, 64), "FFV1")
    return hf, str(folder / "hf"), video


def test_loss_matches_transformers(pretrained, record_parity):
    hf, folder, video = pretrained
    model = from_pretrained(folder)
    mask = mask_for_model(model, seed=5)
    result = reconstruct_video(model, video, mask=mask)
    views = load_views(video, 4, 32, (1, 1), "dense")
    with torch.no_grad():
        out = hf(torch.from_numpy(views.data.transpose(0, 1, 4, 2, 3)),
                 bool_masked_pos=torch.from_numpy(mask[None]))
    assert record_parity("norm-pix loss", np.float64(result.loss), out.loss.numpy()) <= 1e-5
    assert result.loss > 0


def test_pictures_keep_visible_patches_and_grey_out_masked(pretrained):
    _, folder, video = pretrained
    model = from_pretrained(folder)
    result = reconstruct_video(model, video, seed=1)
    tokens = patchify(result.original[None], 2, 8)[0]
    rebuilt = patchify(result.reconstruction[None], 2, 8)[0]
    hidden = patchify(result.masked[None], 2, 8)[0]
    visible = ~result.mask
    np.testing.assert_allclose(rebuilt[visible], np.clip(tokens[visible], 0, 1), atol=1e-5)
    np.testing.assert_array_equal(hidden[result.mask], 0.5)
    np.testing.assert_array_equal(hidden[visible], tokens[visible])
    assert not np.allclose(rebuilt[result.mask], tokens[result.mask], atol=1e-3)
    # the tube property: the same spatial pattern in every temporal slice
    grid = result.mask.reshape(model.grid)
    assert all(np.array_equal(grid[0], g) for g in grid)
    assert result.mask.sum() == model.num_masked


def test_png_and_gif(pretrained, tmp_path):
    """Pictures a person can read: 32-pixel frames enlarged to 128 (nearest neighbour), the
    row names in a margin of their own (every frame pixel shown as it is), and a GIF with
    the three named rows."""
    from videomae_keras.pictures import GAP
    from videomae_keras.pictures import to_uint8 as _to_uint8

    _, folder, video = pretrained
    result = reconstruct_video(from_pretrained(folder), video)
    png = result.save_png(tmp_path / "r.png")
    gif = result.save_gif(tmp_path / "r.gif", fps=5)
    rows = [_to_uint8(f) for f in (result.original, result.masked, result.reconstruction)]

    def enlarged(frame):
        return np.repeat(np.repeat(frame, 4, axis=0), 4, axis=1)

    with Image.open(png) as image:
        picture = np.asarray(image.convert("RGB"))
    frames_width = 2 * 128 + GAP  # every 2nd of 4 frames
    margin = picture.shape[1] - frames_width - GAP
    assert picture.shape[0] == 3 * 128 + 2 * GAP and margin >= 90
    for r, row in enumerate(rows):
        top = r * (128 + GAP)
        for c, t in enumerate((0, 2)):
            left = margin + GAP + c * (128 + GAP)
            np.testing.assert_array_equal(picture[top:top + 128, left:left + 128],
                                          enlarged(row[t]))
        label = picture[top:top + 128, :margin]
        assert (label < 100).any() and (label == 255).mean() > 0.8  # dark text on white
    with Image.open(gif) as image:
        assert image.n_frames == 4 and image.size == (margin + GAP + 128, picture.shape[0])
        image.seek(1)
        frame = np.asarray(image.convert("RGB"))
    # the same names (up to the GIF's 256-colour palette)
    assert np.abs(frame[:, :margin].astype(int) - picture[:, :margin]).max() <= 48
    assert np.abs(frame[:128, margin + GAP:].astype(int) - enlarged(rows[0][1])).max() <= 24
    with pytest.raises(FileExistsError, match="overwrite"):
        result.save_png(png)
    result.save_png(png, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.gif", "r.png"]  # no temp files


def test_mask_ratio_must_match_the_model(pretrained):
    _, folder, _ = pretrained
    model = from_pretrained(folder)
    with pytest.raises(ValueError, match="mask_ratio"):
        mask_for_model(model, mask_ratio=0.5)
    assert from_pretrained(folder, mask_ratio=0.5).num_masked == 2 * 8


def test_reconstruct_needs_a_pretraining_model(pretrained):
    _, _, video = pretrained
    classifier = VideoMAEClassifier.from_arguments(num_classes=3, num_frames=4, image_size=32, patch_size=8,
                                    hidden_dim=16, depth=1, num_heads=2, mlp_dim=16)
    with pytest.raises(ValueError, match="pretraining model"):
        reconstruct_video(classifier, video)


def test_pixel_loss_models_are_drawn_as_predicted(pretrained):
    """With norm_pix_loss=False the model predicts [0, 1] pixels: the masked patches of the
    picture are its predictions, with no statistics borrowed from the original."""
    from videomae_keras import VideoMAEPretrainer

    _, _, video = pretrained
    model = VideoMAEPretrainer.from_arguments(num_frames=4, image_size=32, patch_size=8, hidden_dim=16,
                               depth=1, num_heads=2, mlp_dim=16, decoder_hidden_dim=8,
                               decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=8,
                               mask_ratio=0.5, norm_pix_loss=False)
    result = reconstruct_video(model, video, seed=2)
    views = load_views(video, 4, 32, (1, 1), "dense")
    predicted = np.asarray(model.predict_on_batch([views.data, result.mask[None]]))
    predicted = predicted.reshape(1, int(result.mask.sum()), -1, 3)
    rebuilt = patchify(result.reconstruction[None], 2, 8)
    np.testing.assert_allclose(rebuilt[:, result.mask], np.clip(predicted, 0, 1), atol=1e-5)
    target = patchify(result.original[None], 2, 8)[:, result.mask]
    assert result.target == "pixels"
    assert result.loss == pytest.approx(float(np.mean((predicted - target) ** 2)), rel=1e-4)
