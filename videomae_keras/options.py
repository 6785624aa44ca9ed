"""Plain option values shared by the library and the command line, with no Keras or numpy
(the command line checks its arguments with these before anything heavy loads)."""

import argparse

# What `port` writes: format name -> file suffix.
FORMATS = {
    "keras": ".keras",
    "h5": ".weights.h5",
    "savedmodel": "_savedmodel",
    "onnx": ".onnx",
    "onnx-int8": ".int8.onnx",  # dynamically quantised with onnxruntime's tools
}


def parse_views(views):
    """(clips, crops) from a pair, "5x3", or None (the sampler's default)."""
    if views is None:
        return None
    if isinstance(views, str):
        parts = views.lower().replace("*", "x").split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"views must look like 5x3 (clips x crops); got {views!r}.")
        views = tuple(int(p) for p in parts)
    clips, crops = (int(v) for v in views)
    if clips < 1 or crops < 1:
        raise ValueError(f"views needs at least one clip and one crop; got {clips}x{crops}.")
    return clips, crops


# Ways to train on several devices (training/distribute.py).
DISTRIBUTIONS = ("data", "fsdp")


def parse_mesh(text, devices=None):
    """(batch, model) from "BxM", e.g. "2x4" (checked against the device count if given)."""
    parts = str(text).lower().replace("*", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"mesh must look like 2x4 (batch x model, each at least 1); got "
                         f"{text!r}.")
    if devices is not None and shape[0] * shape[1] != devices:
        raise ValueError(
            f"mesh {shape[0]}x{shape[1]} needs {shape[0] * shape[1]} devices; there are "
            f"{devices}. Choose a mesh whose sizes multiply to {devices}."
        )
    return shape


def batch_ways(distribution, mesh, devices):
    """Into how many parts a distribution splits each batch over `devices`: 1 on one device,
    all of them for "data" (and "fsdp" without a mesh), the mesh's batch axis for "fsdp"."""
    if distribution in (None, "none", "single"):
        return 1
    if distribution == "fsdp" and mesh:
        if isinstance(mesh, str):
            return parse_mesh(mesh, devices)[0]
        return mesh[0] or devices // mesh[1]
    return devices


# argparse types: each checks a value as it is parsed and says what it expected.
def at_least(minimum, kind=int):
    """An argparse type: a number of `kind` no smaller than `minimum`."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value

    return parse


def fraction(low=0.0, high=1.0, high_inclusive=False, low_inclusive=True):
    """An argparse type: a number in [low, high) (or with the given ends)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        above = value >= low if low_inclusive else value > low
        below = value <= high if high_inclusive else value < high
        if not (above and below):
            interval = ("[" if low_inclusive else "(") + f"{low:g}, {high:g}" + (
                "]" if high_inclusive else ")")
            raise argparse.ArgumentTypeError(f"must lie in {interval}, got {text}")
        return value

    return parse


POSITIVE = at_least(1)

NON_NEGATIVE = at_least(0)

POSITIVE_FLOAT = fraction(0.0, float("inf"), low_inclusive=False)

RATIO = fraction(0.0, 1.0)


def views(text):
    """An argparse type: "5x3" as (clips, crops)."""
    try:
        return parse_views(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))
