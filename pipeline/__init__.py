"""hpekd library: datasets, geometry, models, the convolutional ensemble and the label store."""

__version__ = "0.1.0"

_API = ("Predictor", "predict_images", "export_onnx", "ExportReport", "draw_axes", "draw_face",
        "read_rows", "write_rows", "ROW_FIELDS")


def __getattr__(name: str):
    """Lazy public API (pipeline.inference.api) so `import pipeline` stays light (no torch, no cv2)."""
    if name in _API:
        from pipeline.inference import api

        return getattr(api, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
