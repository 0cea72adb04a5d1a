"""The user-facing Python API (re-exported lazily by ``pipeline/__init__.py``).

    from pipeline import Predictor, predict_images, export_onnx, draw_axes

    pred = Predictor("models/student.pt", device="auto")        # any stage-1/stage-2 checkpoint
    for row in pred.predict_paths(["photos/", "clip.mp4"]):      # rows: file, frame, face, box, angles
        print(row["file"], row["face"], row["pitch"], row["yaw"], row["roll"])
    export_onnx("models/student.pt", "student.onnx")              # needs the 'onnx' extra
"""

from __future__ import annotations

from pipeline.inference.drawing import draw_axes, draw_face
from pipeline.inference.export import ExportReport, export_onnx
from pipeline.inference.predict import predict_images
from pipeline.inference.predictor import Predictor
from pipeline.inference.rows import ROW_FIELDS, read_rows, write_rows

__all__ = [
    "Predictor", "predict_images", "export_onnx", "ExportReport", "draw_axes", "draw_face",
    "ROW_FIELDS", "read_rows", "write_rows",
]
