"""Checkpoint tensors that are read when they are used, one at a time.

Loading a checkpoint used to read every tensor into memory first, then transform them all,
then assign: three copies of the weights beside the model. A `LazyTensor` knows its shape and
dtype from the file's header and reads its data only on `load()`, so loading can check every
key and shape before anything is read, and then read, convert and assign one tensor at a
time: at most one tensor's copies exist beside the model.
"""

import numpy as np


class LazyTensor:
    """A tensor of known shape and dtype whose values `read()` returns when they are needed.

    Works where a numpy array is expected for reading (`np.asarray(tensor)`); `load()` gives
    the values (float32 for floating tensors, as every checkpoint reader returns them).
    """

    __slots__ = ("shape", "dtype", "_read")

    def __init__(self, shape, dtype, read):
        self.shape = tuple(int(size) for size in shape)
        self.dtype = dtype
        self._read = read

    @property
    def ndim(self):
        return len(self.shape)

    def load(self):
        return self._read()

    def __array__(self, dtype=None, copy=None):
        array = self.load()
        return array if dtype is None else array.astype(dtype, copy=False)

    def __repr__(self):
        return f"LazyTensor(shape={self.shape}, dtype={self.dtype})"


def load(value):
    """The values of a `LazyTensor`, or the array itself."""
    return value.load() if isinstance(value, LazyTensor) else np.asarray(value)


def materialize(state):
    """{key: numpy array} for a state dict that may hold lazy tensors (every tensor read)."""
    return {key: load(value) for key, value in state.items()}


def split(value, sections, axis=0):
    """`np.split(value, sections, axis)` into equal parts; lazy parts for a lazy tensor."""
    if not isinstance(value, LazyTensor):
        return np.split(value, sections, axis=axis)
    if value.shape[axis] % sections:
        raise ValueError(f"A tensor of shape {value.shape} does not split into {sections} equal "
                         f"parts along axis {axis}.")
    shape = list(value.shape)
    shape[axis] //= sections

    def part(index):
        return lambda: np.ascontiguousarray(np.split(value.load(), sections, axis=axis)[index])

    return [LazyTensor(shape, value.dtype, part(i)) for i in range(sections)]


def concatenate(values, axis=0):
    """`np.concatenate(values, axis)`; lazy when any part is, read part by part when used."""
    if not any(isinstance(v, LazyTensor) for v in values):
        return np.concatenate(values, axis=axis)
    shapes = [tuple(v.shape) for v in values]
    rest = {s[:axis] + s[axis + 1:] for s in shapes}
    if len(rest) != 1:
        raise ValueError(f"Tensors of shapes {shapes} do not join along axis {axis}.")
    shape = list(shapes[0])
    shape[axis] = sum(s[axis] for s in shapes)
    return LazyTensor(shape, values[0].dtype,
                      lambda: np.concatenate([load(v) for v in values], axis=axis))
