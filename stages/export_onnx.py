"""``hpekd export-onnx``: the trained network as an ONNX model, checked with ONNX Runtime."""

from __future__ import annotations

import click

from stages.common import check_outputs, user_errors

EPILOG = """\b
Examples:
  hpekd export-onnx models/student.pt student.onnx
  hpekd export-onnx models/teacher.pt teacher.onnx --opset 18 --no-check

\b
The model takes 'input' [B, 3, h, w] float32: the face crop (h x w = the checkpoint's
input size), RGB scaled to [0, 1] then normalised with ImageNet mean/std. It returns
'angles' [B, 3] (pitch, yaw, roll degrees) and 'probs' [B, 3, Q] (the smallest-bin head's
softmax). Input size, normalisation and bin centers are in the model's metadata (hpekd.*).
Needs the optional extra: pip install 'hpekd[onnx]'.
"""


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--opset", default=17, show_default=True, type=click.IntRange(min=9), help="ONNX opset version.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Compare ONNX Runtime's output with torch's on a sample batch.")
@user_errors
def cli(checkpoint: str, out: str, opset: int, check: bool) -> None:
    """Export CHECKPOINT (stage 1 or stage 2) to OUT (.onnx) with a dynamic batch axis."""
    from pipeline.inference.export import export_onnx

    check_outputs([checkpoint], onnx_file=out)
    rep = export_onnx(checkpoint, out, opset=opset, check=check)
    msg = f"wrote {rep.path} (input {rep.input_size[0]}x{rep.input_size[1]}, {rep.bins} bins, opset {rep.opset})"
    if rep.checked:
        msg += f"; onnxruntime matches torch (max diff {rep.max_abs_diff_angles:.1e} deg)"
    click.echo(msg)
