"""Checkpoints as files: the download cache of registered checkpoints (`cache`), porting a
checkpoint to Keras, SavedModel and ONNX files with verification (`porting`), and the
SavedModel/ONNX writers (`export`). What is registered is in `videomae_keras.presets`; how a
checkpoint's tensors become a model is in `videomae_keras.convert`."""
