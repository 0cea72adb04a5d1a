"""``hpekd import-weights``: released head-pose weights as an hpekd checkpoint (a tool, not a DVC stage)."""

from __future__ import annotations

import click

from stages.common import check_outputs, user_errors

EPILOG = """\b
Examples:
  hpekd import-weights --format kd_oe_hpe models/ap1/resnet50.pth --backbone resnet50 --out models/kd_resnet50.pt
  hpekd evaluate --model models/kd_resnet50.pt --boxes data/boxes.parquet --out metrics/eval/kd-resnet50.json

\b
kd_oe_hpe: the paper's released models (AndreySheka/kd_oe_hpe, models/ap{1,2,3}/resnet*.pth,
one per protocol): encoder_net.model.<torchvision ResNet without fc> + head_net.{pitch,yaw,roll}
= Linear(C, 198). Their pitch is the negative of the 300W-LP convention used here, so the pitch
distribution is mirrored. The result is a student checkpoint (one RvC head, bin 1, input
224x224, ImageNet normalisation) for evaluate, predict, export-onnx and teacher-labels --model.
"""


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("weights", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["kd_oe_hpe"]), default="kd_oe_hpe", show_default=True,
              help="Layout of WEIGHTS.")
@click.option("--backbone", required=True,
              type=click.Choice(["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]),
              help="The ResNet the weights belong to (the released file name says it).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="hpekd checkpoint (.pt) to write.")
@user_errors
def cli(weights: str, fmt: str, backbone: str, out_path: str) -> None:
    """Convert released WEIGHTS (a .pth state dict) into an hpekd checkpoint."""
    from pipeline.model.import_weights import import_weights

    check_outputs([weights], checkpoint=out_path)
    rep = import_weights(weights, backbone, out_path, fmt=fmt)
    click.echo(f"wrote {rep.out} (student {rep.backbone}, one RvC head of {rep.bins} bins, input "
               f"{rep.input_size[0]}x{rep.input_size[1]}; pitch mirrored to the 300W-LP convention) from {weights}")
