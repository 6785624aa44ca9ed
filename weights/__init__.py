"""Data shipped with videomae-keras: the checkpoint registry, label maps and small checkpoints.

Installed as the package `videomae_keras.weights`; read it with `importlib.resources`.
"""
