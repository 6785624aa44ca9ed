"""In-graph pre-processing, so a model (or an exported SavedModel / ONNX file) takes uint8 frames."""

import keras
from keras import ops

from videomae_keras.configs import IMAGENET_MEAN, IMAGENET_STD


@keras.saving.register_keras_serializable(package="videomae_keras")
class VideoPreprocessing(keras.layers.Layer):
    """uint8 frames (B, T, H, W, C) -> normalised float32 (B, T, size, size, 3).

    The same steps as `videomae_keras.video.preprocess` with one centre crop: resize so the
    short side is `image_size` (bilinear, no antialiasing; long side int(size * long /
    short)), centre crop, x / 255, ImageNet mean and std. H and W must be known when the
    layer is built (static shapes). Rounding the resized pixels to integers mirrors the
    uint8 step of the numpy path; bilinear weights differ from OpenCV's fixed-point ones by at
    most one grey level.

    Args:
        image_size: output height and width (int or (height, width)).
        resize: False when the frames come at the crop size already (then only the crop and
            normalisation run).
        mean, std: per-channel statistics (ImageNet by default).
    """

    def __init__(self, image_size=224, resize=True, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.image_size = (
            (int(image_size), int(image_size)) if isinstance(image_size, int)
            else tuple(int(s) for s in image_size)
        )
        self.resize = bool(resize)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def build(self, input_shape):
        if len(input_shape) != 5 or input_shape[2] is None or input_shape[3] is None:
            raise ValueError(
                "VideoPreprocessing needs (batch, frames, height, width, channels) input with "
                f"known height and width; got {input_shape}."
            )
        from videomae_keras.video.preprocess import crop_boxes, resized_shape

        height, width = int(input_shape[2]), int(input_shape[3])
        self._resized = resized_shape(height, width, self.image_size) if self.resize else (
            height, width)
        self._box = crop_boxes(*self._resized, self.image_size, 1)[0]
        self.built = True

    def call(self, frames):
        shape = ops.shape(frames)
        x = ops.cast(frames, "float32")
        if x.shape[-1] == 1:
            x = ops.repeat(x, 3, axis=-1)
        elif x.shape[-1] == 4:
            x = x[..., :3]
        if self.resize and self._resized != (x.shape[2], x.shape[3]):
            x = ops.reshape(x, (-1, x.shape[2], x.shape[3], 3))
            x = ops.image.resize(x, self._resized, interpolation="bilinear", antialias=False)
            x = ops.round(ops.clip(x, 0.0, 255.0))
            x = ops.reshape(x, (shape[0], shape[1], self._resized[0], self._resized[1], 3))
        top, left = self._box
        x = x[:, :, top : top + self.image_size[0], left : left + self.image_size[1], :]
        mean = ops.convert_to_tensor(self.mean, "float32")
        std = ops.convert_to_tensor(self.std, "float32")
        return (x / 255.0 - mean) / std

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], *self.image_size, 3)

    def get_config(self):
        config = super().get_config()
        config.update(image_size=self.image_size, resize=self.resize, mean=self.mean,
                      std=self.std)
        return config


def with_preprocessing(model, frame_shape, resize=True, name=None):
    """`model` behind a `VideoPreprocessing` layer: a Keras model taking uint8 frames of
    `frame_shape` = (T, H, W) (other inputs, such as a mask, pass through unchanged)."""
    frames_count, height, width = frame_shape
    video_shape = model.inputs[0].shape
    if video_shape[1] is not None and video_shape[1] != frames_count:
        raise ValueError(
            f"The model takes {video_shape[1]} frames; frame_shape asks for {frames_count}."
        )
    frames = keras.Input((frames_count, height, width, 3), dtype="uint8", name="frames")
    x = VideoPreprocessing(tuple(video_shape[2:4]), resize=resize, name="preprocessing")(frames)
    extra = [keras.Input(t.shape[1:], dtype=t.dtype, name=t.name.split(":")[0] + "_in")
             for t in model.inputs[1:]]
    outputs = model([x, *extra] if extra else x)
    return keras.Model([frames, *extra] if extra else frames, outputs,
                       name=name or f"{model.name}_uint8")
