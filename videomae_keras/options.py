"""Plain option values shared by the library and the command line, with no Keras or numpy
(the command line checks its arguments with these before anything heavy loads)."""

# What `port` writes: format name -> file suffix.
FORMATS = {
    "keras": ".keras",
    "h5": ".weights.h5",
    "savedmodel": "_savedmodel",
    "onnx": ".onnx",
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
