"""One process of tests/test_kernel_sweep.py: the pin first (unless ``HPEKD_NUMERICS=native``), then
a tiny render, one stage-1 training step on augmented crops and one teacher pass; prints a sha256
per block as one JSON line. Run as ``python -m tests.helpers.kernel_probe TMPDIR``."""

from __future__ import annotations

from pipeline.core import numerics

numerics.pin()  # before numpy, OpenCV and torch load, as every entry point does

import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.data.datasets import PoseDataset  # noqa: E402
from pipeline.data.transforms import AugmentConfig  # noqa: E402
from pipeline.model.losses import stage1_loss  # noqa: E402
from pipeline.model.network import HeadPoseNet, ModelSpec  # noqa: E402
from pipeline.synth.generate import _jpeg, draw_sample, render_sample  # noqa: E402
from pipeline.teacher.ensemble import ensemble_probs  # noqa: E402
from tests.conftest import make_tiny_dataset  # noqa: E402


def _h(*parts: object) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().contiguous().numpy()
        digest.update(np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray) else part)  # type: ignore[arg-type]
    return digest.hexdigest()[:16]


def main(tmp: Path) -> dict[str, str]:
    numerics.apply_threads()
    out: dict[str, str] = {}
    renders = [render_sample(draw_sample(7, "train", i, 96), 96) for i in range(3)]
    out["render"] = _h(*[_jpeg(r.rgb) for r in renders], *[r.pt2d for r in renders], *[r.pose_para for r in renders])
    ds = PoseDataset(make_tiny_dataset(tmp, n_train=8, n_test=2), "train", 64, train=True, augment=AugmentConfig())
    items = [ds[i] for i in range(8)]
    x = torch.stack([it["image"] for it in items]).float() / 255.0
    target = torch.stack([it["target"] for it in items])
    out["loader"] = _h(x)
    torch.manual_seed(0)
    model = HeadPoseNet(ModelSpec("resnet18", (1, 2, 3, 4), True, feature_norm=True))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    loss, _ = stage1_loss(model(x), target, model.spec.grids)
    loss.backward()
    opt.step()
    out["train_step"] = _h(*[p for p in model.parameters()])
    model.eval()
    z = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 68, 68, 3), dtype=np.uint8))
    out["teacher_pass"] = _h(ensemble_probs(model, z, (64, 64), 2, 2, amp=False))
    return out


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
