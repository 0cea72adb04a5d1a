"""Using a trained model: the Predictor (detect, crop as in training, predict, optional ensemble),
pose-axis drawing, ONNX export, and the public Python API re-exported by `pipeline`."""
