"""Pictures of clips: frames enlarged to a visible size, rows named in a margin, white gaps,
saved atomically as PNG grids and looping GIFs (reconstructions and explanations share them)."""

import os

import numpy as np

from videomae_keras.atomic import atomic_output

# Pictures: frames enlarged to at least this many pixels on their short side, rows named in
# a margin of their own, white gaps between frames and rows.
MIN_FRAME_SIDE = 128
GAP = 4
MARGIN_COLOUR = 255
TEXT_COLOUR = (20, 20, 20)


def enlarge(frames):
    """(T, H, W, 3) uint8 frames repeated by a whole factor (nearest neighbour) so that the
    short side reaches MIN_FRAME_SIDE; frames that large already are returned as they are."""
    factor = -(-MIN_FRAME_SIDE // min(frames.shape[1:3]))
    if factor <= 1:
        return frames
    return np.repeat(np.repeat(frames, factor, axis=1), factor, axis=2)


def gapped(images, axis=1):
    """Images side by side (axis 1) or stacked (axis 0) with white gaps between them."""
    out = []
    for i, image in enumerate(images):
        if i:
            shape = list(image.shape)
            shape[axis] = GAP
            out.append(np.full(shape, MARGIN_COLOUR, np.uint8))
        out.append(image)
    return np.concatenate(out, axis=axis)


def scalable_font(size):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow >= 10.1)
    except TypeError:
        return ImageFont.load_default()


def labelled(rows, names):
    """Rows stacked with gaps; with `names`, each row's name written in a white margin to
    the left of the row, centred on it, never over the frames."""
    if names is None:
        return gapped(rows, axis=0)
    from PIL import Image, ImageDraw

    height = min(row.shape[0] for row in rows)
    font = scalable_font(max(12, min(22, height // 6)))
    width = max(ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), name, font=font)[2]
                for name in names) + 2 * GAP + 8
    labelled = []
    for row, name in zip(rows, names):
        margin = Image.new("RGB", (width, row.shape[0]), (MARGIN_COLOUR,) * 3)
        draw = ImageDraw.Draw(margin)
        box = draw.textbbox((0, 0), name, font=font)
        draw.text((GAP + 4, (row.shape[0] - (box[3] + box[1])) // 2), name, font=font,
                  fill=TEXT_COLOUR)
        gap = np.full((row.shape[0], GAP, 3), MARGIN_COLOUR, np.uint8)
        labelled.append(np.concatenate([np.asarray(margin), gap, row], axis=1))
    return gapped(labelled, axis=0)


def to_uint8(frames):
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_png(picture, path, overwrite=False):
    """Writes a uint8 (H, W, 3) picture as a PNG (atomically); returns the path."""
    from PIL import Image

    path = os.fspath(path)
    with atomic_output(path, overwrite=overwrite, suffix=".png") as temp:
        Image.fromarray(picture).save(temp, format="PNG")
    return path


def save_gif(frames, path, overwrite=False, fps=4.0):
    """Writes uint8 (T, H, W, 3) frames as a looping animated GIF (atomically); returns the
    path."""
    from PIL import Image

    path = os.fspath(path)
    images = [Image.fromarray(f) for f in frames]
    with atomic_output(path, overwrite=overwrite, suffix=".gif") as temp:
        images[0].save(temp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(round(1000 / fps)), loop=0)
    return path


def save_mp4(frames, path, overwrite=False, fps=4.0):
    """Writes uint8 RGB (T, H, W, 3) frames as an MP4 (mp4v, through OpenCV, atomically);
    returns the path. RuntimeError where this OpenCV has no MP4 writer."""
    import cv2

    path = os.fspath(path)
    with atomic_output(path, overwrite=overwrite, suffix=".mp4") as temp:
        writer = cv2.VideoWriter(temp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps),
                                 (frames.shape[2], frames.shape[1]))
        if not writer.isOpened():
            raise RuntimeError("OpenCV cannot write mp4v videos here.")
        for frame in frames:
            writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
        writer.release()
    return path


def captioned(picture, text):
    """The picture under a white strip with `text` written in it."""
    from PIL import Image, ImageDraw

    size = max(12, min(22, picture.shape[0] // 12))
    face = scalable_font(size)
    strip = Image.new("RGB", (picture.shape[1], size + 4 * GAP), (MARGIN_COLOUR,) * 3)
    ImageDraw.Draw(strip).text((GAP + 4, 2 * GAP), text, font=face, fill=TEXT_COLOUR)
    return np.concatenate([np.asarray(strip), picture], axis=0)


TIMELINE_ROW = 28  # pixels per class row
TIMELINE_WIDTH = 720  # the strip's width at least, whatever the number of windows


def timeline_picture(values, names, start_seconds, end_seconds):
    """uint8 picture of `values` (rows, windows) in [0, 1]: one strip per row, white at 0 and
    dark blue at 1, named in a left margin, with the windows' start times in seconds below."""
    from PIL import Image, ImageDraw

    values = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
    windows = values.shape[1]
    cell = max(1, -(-TIMELINE_WIDTH // max(windows, 1)))
    dark = np.array([20, 60, 160], np.float32)
    rows = []
    for row in values:
        colours = 255.0 + row[:, None] * (dark - 255.0)  # (windows, 3)
        strip = np.repeat(colours[None], TIMELINE_ROW, axis=0)
        rows.append(np.repeat(strip, cell, axis=1).round().astype(np.uint8))
    picture = labelled(rows, list(names))
    margin = picture.shape[1] - rows[0].shape[1]
    face = scalable_font(12)
    axis = Image.new("RGB", (picture.shape[1], 24), (MARGIN_COLOUR,) * 3)
    draw = ImageDraw.Draw(axis)
    starts = np.asarray(start_seconds, np.float64)
    known = np.isfinite(starts).all()
    ticks = np.unique(np.linspace(0, windows - 1, min(windows, 6)).round().astype(int))
    for w in ticks:
        text = f"{starts[w]:.1f} s" if known else f"#{w}"
        x = margin + w * cell
        draw.line([(x, 0), (x, 5)], fill=TEXT_COLOUR)
        draw.text((min(x, picture.shape[1] - 40), 7), text, font=face, fill=TEXT_COLOUR)
    return np.concatenate([picture, np.asarray(axis)], axis=0)
