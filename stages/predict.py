"""``hpekd predict``: head pose for every face in images, folders and videos."""

from __future__ import annotations

import click

from stages.common import check_outputs, user_errors

EPILOG = """\b
Examples:
  hpekd predict photo.jpg --model models/student.pt
  hpekd predict photos/ --model models/student.pt --out preds.csv --draw annotated/
  hpekd predict clip.mp4 --model models/teacher.pt --out clip.jsonl --draw annotated/ --device cuda
  hpekd predict photos/ --model models/teacher.pt --ensemble 15,5 --out preds.jsonl

\b
Output columns (one row per face): file, frame (videos; empty for images), face (index,
left to right), x1, y1, x2, y2 (detector box, pixels), det_score, pitch, yaw, roll
(degrees, 300W-LP convention), error. A file or video frame without a usable face gives one
row with only file/frame/error filled in, and the run goes on. Exit status 1 when no face
could be predicted in any input (missing path, no faces anywhere, unreadable inputs).
"""


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--model", "-m", "model", required=True, type=click.Path(dir_okay=False),
              help="Stage-1 (train-teacher) or stage-2 (train-student) checkpoint (.pt).")
@click.option("--out", "-o", default="-", show_default=True,
              help="Predictions file: .jsonl or .csv (written atomically); '-' = JSON Lines on stdout.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default=None,
              help="Output format (default: from the --out extension).")
@click.option("--draw", "draw_dir", type=click.Path(file_okay=False), default=None,
              help="Also write annotated copies here (pose axes: x red, y green, z blue); videos as .mp4.")
@click.option("--ensemble", default=None, metavar="P,S",
              help="Convolutional ensemble at inference: pad P, stride S (P multiple of S), "
                   "A=(2P/S+1)^2 crops per face, e.g. 15,5 (49x slower).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--detector", default="yunet", show_default=True, help="Face detector: yunet or mtcnn.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1),
              help="Network inputs per forward pass (faces batched across images/frames).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar (default: when stderr is a terminal).")
@user_errors
def cli(inputs: tuple[str, ...], model: str, out: str, fmt: str | None, draw_dir: str | None,  # one per click option
        ensemble: str | None, device: str, detector: str, batch_size: int, progress: bool | None) -> None:
    """Predict (pitch, yaw, roll) for every face in INPUTS (images, directories searched
    recursively for images, or videos) with a trained checkpoint.

    Faces are found with the relabeling detector and cropped exactly as in training.
    """
    from pipeline.core.io import check_folder_output
    from pipeline.inference.drawing import DRAWINGS
    from pipeline.inference.inputs import collect_inputs
    from pipeline.inference.predictor import Predictor
    from pipeline.inference.rows import output_format, write_rows

    check_outputs(list(inputs), predictions=None if out == "-" else out)
    if draw_dir is not None:
        check_folder_output(draw_dir, DRAWINGS, "--draw", inputs)
    items = collect_inputs(inputs)  # missing paths fail here, before the model loads
    kind = output_format(None if out == "-" else out, fmt)
    pred = Predictor(model, device=device, detector=detector, batch_size=batch_size, ensemble=ensemble)
    rows = pred.predict_paths(items, draw_dir=draw_dir, progress=progress)
    summary = write_rows(rows, None if out == "-" else out, kind)
    where = "stdout" if out == "-" else out
    click.echo(
        f"{summary.faces} face(s) in {summary.files - summary.failed_files}/{summary.files} file(s); "
        f"{summary.errors} error row(s) -> {where}" + (f"; drawings in {draw_dir}" if draw_dir else ""),
        err=True,
    )
    if summary.faces == 0:
        raise click.ClickException(
            f"no face could be predicted in any input (see the error rows in {where}); "
            "check the paths, that the images show faces, or try --detector mtcnn"
        )
