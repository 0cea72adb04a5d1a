"""ONNX export of a trained head-pose network (stage 1 or stage 2).

The exported graph takes the ImageNet-normalised RGB face crop ``input`` [B, 3, h, w] float32
(batch axis dynamic; h×w = the checkpoint's ``input_size``; crop the detector box with
:func:`pipeline.core.geometry.crop` and normalise with mean (0.485, 0.456, 0.406), std
(0.229, 0.224, 0.225) on [0, 1] pixels) and returns

- ``angles`` [B, 3]: (pitch, yaw, roll) degrees, decoded from the smallest-bin head (eq. 2);
- ``probs`` [B, 3, Q]: that head's softmax distributions (bin centers in the model metadata).

The same facts are stored in the ONNX ``metadata_props`` (``hpekd.*`` keys). Needs the
optional extra ``pip install 'hpekd[onnx]'`` (onnx; onnxruntime for the check).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.core.images import IMAGENET_MEAN, IMAGENET_STD
from pipeline.core.io import atomic_path, sha256_file
from pipeline.model.checkpoint import input_size_of, load_checkpoint, model_from_checkpoint
from pipeline.model.network import HeadPoseNet

log = logging.getLogger(__name__)

ONNX_EXTRA = "pip install 'hpekd[onnx]'  (or: pip install onnx onnxruntime)"


class PoseExportWrapper(nn.Module):
    """Tensor-only forward for export: normalised crops → (angles [B, 3], probs [B, 3, Q])."""

    def __init__(self, model: HeadPoseNet) -> None:
        super().__init__()
        self.model = model
        self.key = model.spec.predict_key
        self.register_buffer("centers", model.spec.grids[self.key].centers_tensor().float(), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = torch.softmax(self.model(x)[self.key].float(), dim=-1)
        angles = (probs * self.centers).sum(-1)
        return angles, probs


@dataclass(frozen=True)
class ExportReport:
    path: Path
    input_size: tuple[int, int]
    bins: int
    opset: int
    checked: bool
    max_abs_diff_angles: float | None = None  # degrees, ONNX Runtime vs torch on the sample batch
    max_abs_diff_probs: float | None = None


def _require(module: str, what: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise ValueError(f"{what} needs the '{module}' package, which is not installed: {ONNX_EXTRA}") from exc


def _metadata(state: dict, model: nn.Module, wrapper: nn.Module, hw: tuple[int, int], sha: str) -> dict[str, str]:
    """The ONNX model's metadata: what hpekd knows of the network, its input and its outputs."""
    grid = model.spec.grids[wrapper.key]
    return {
        "hpekd.kind": state["kind"],
        "hpekd.backbone": model.spec.backbone,
        "hpekd.model_spec": json.dumps(model.spec.to_dict()),
        "hpekd.head": wrapper.key,
        "hpekd.input_size": json.dumps(list(hw)),
        "hpekd.input": "RGB float32 [B,3,h,w], (pixel/255 - mean)/std",
        "hpekd.mean": json.dumps(list(IMAGENET_MEAN)),
        "hpekd.std": json.dumps(list(IMAGENET_STD)),
        "hpekd.outputs": "angles [B,3] degrees (pitch, yaw, roll); probs [B,3,Q] softmax of the head",
        "hpekd.bin_size": f"{grid.size:g}",
        "hpekd.bin_centers": json.dumps([round(float(c), 4) for c in grid.centers]),
        "hpekd.checkpoint_sha256": sha,
    }


def export_onnx(
    checkpoint: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    opset: int = 17,
    check: bool = True,
    check_batch: int = 3,
    atol: float = 1e-3,
) -> ExportReport:
    """Export ``checkpoint`` to ``out_path`` (atomically) and, with ``check``, compare ONNX
    Runtime's output with torch's on a seeded sample batch (``ValueError`` beyond ``atol``
    degrees / ``atol`` probability)."""
    onnx = _require("onnx", "ONNX export")
    if check:
        _require("onnxruntime", "checking the exported model (check=True)")
    ckpt = Path(checkpoint)
    state = load_checkpoint(ckpt)
    h, w = input_size_of(state, repr(str(ckpt)))
    model, state = model_from_checkpoint(state)
    model.eval()
    wrapper = PoseExportWrapper(model).eval()
    grid = model.spec.grids[wrapper.key]
    sample = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0))

    out = Path(out_path)
    if out.suffix.lower() != ".onnx":
        log.warning("output %s does not end in .onnx", out)
    with atomic_path(out, ".onnx") as tmp:
        with warnings.catch_warnings():
            # torch >= 2.9 defaults to the dynamo exporter (needs onnxscript) and flags the
            # TorchScript exporter as deprecated; the latter is what we use (dynamo=False).
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(
                wrapper, (sample,), str(tmp), dynamo=False, opset_version=int(opset),
                input_names=["input"], output_names=["angles", "probs"],
                dynamic_axes={"input": {0: "batch"}, "angles": {0: "batch"}, "probs": {0: "batch"}},
                do_constant_folding=True,
            )
        proto = onnx.load(str(tmp))
        meta = _metadata(state, model, wrapper, (h, w), sha256_file(ckpt))
        for k, v in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        report = ExportReport(out, (h, w), grid.count, int(opset), checked=False)
        if check:
            report = _check(tmp, wrapper, report, check_batch, atol)
    log.info("exported %s (%s, input %dx%d, %d bins)%s", out, model.spec.backbone, h, w, grid.count,
             f"; max |onnx - torch| = {report.max_abs_diff_angles:.2e} deg" if report.checked else "")
    return ExportReport(out, report.input_size, report.bins, report.opset, report.checked,
                        report.max_abs_diff_angles, report.max_abs_diff_probs)


def _check(path: Path, wrapper: nn.Module, report: ExportReport, batch: int, atol: float) -> ExportReport:
    import onnxruntime as ort  # noqa: PLC0415

    h, w = report.input_size
    x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref_angles, ref_probs = (t.numpy() for t in wrapper(x))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    angles, probs = sess.run(["angles", "probs"], {"input": x.numpy()})
    da = float(np.abs(angles - ref_angles).max())
    dp = float(np.abs(probs - ref_probs).max())
    if not (da <= atol and dp <= atol) or angles.shape != ref_angles.shape:
        raise ValueError(
            f"ONNX check failed for {str(path)!r}: max |onnx - torch| = {da:.3g} deg on angles, "
            f"{dp:.3g} on probabilities (tolerance {atol}); try another --opset"
        )
    return ExportReport(report.path, report.input_size, report.bins, report.opset, True, da, dp)
