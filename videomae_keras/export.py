"""Release 0.1 kept the SavedModel/ONNX writers here; they are `videomae_keras.checkpoints.export`
now, and this name stays for code that imports it."""

from videomae_keras.checkpoints.export import *  # noqa: F401,F403
