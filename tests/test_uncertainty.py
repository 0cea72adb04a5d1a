"""The paired bootstrap behind Table 5's intervals, on crafted errors: a known difference is
found, an identical pair gives an interval around 0, and pairing narrows the interval."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation.uncertainty import paired_difference, seeded_difference


def test_a_known_difference_is_found_and_its_interval_covers_it() -> None:
    rng = np.random.default_rng(1)
    base = rng.gamma(2.0, 3.0, size=(1000, 3))  # per-face errors of method b, heavy-tailed like MAEs
    better = np.clip(base - 0.5 + rng.normal(0, 0.3, size=base.shape), 0, None)  # a: about 0.5° lower
    d = paired_difference(better, base)
    assert d.verdict == "lower" and d.high < 0
    assert d.low <= d.delta <= d.high and -0.6 < d.delta < -0.4
    assert paired_difference(base, better).verdict == "higher"


def test_identical_methods_give_an_interval_around_zero() -> None:
    e = np.random.default_rng(2).gamma(2.0, 3.0, size=(500, 3))
    d = paired_difference(e, e.copy())
    assert (d.delta, d.low, d.high, d.verdict) == (0.0, 0.0, 0.0, "none")
    noise = e + np.random.default_rng(3).normal(0, 0.5, size=e.shape)  # no systematic difference
    d = paired_difference(noise, e)
    assert d.low < 0 < d.high and d.verdict == "none"


def test_pairing_makes_the_interval_narrower_than_the_mae_spread() -> None:
    rng = np.random.default_rng(4)
    hard = rng.gamma(1.5, 6.0, size=800)  # the face's difficulty, shared by both methods
    a, b = hard + rng.normal(0, 0.3, 800), hard + 0.2 + rng.normal(0, 0.3, 800)
    d = paired_difference(a, b)
    assert d.verdict == "lower" and d.high - d.low < 0.1, "paired: the shared difficulty cancels"


def test_the_interval_is_reproducible_and_inputs_are_checked() -> None:
    e = np.random.default_rng(5).random((50, 3))
    assert paired_difference(e, e[::-1]) == paired_difference(e, e[::-1])
    with pytest.raises(ValueError, match="same faces"):
        paired_difference(e, e[:10])
    with pytest.raises(ValueError, match="finite"):
        paired_difference(np.full(3, np.nan), np.zeros(3))


def test_seeded_difference_covers_seeds_and_faces() -> None:
    rng = np.random.default_rng(1)
    faces = rng.gamma(2.0, 2.0, size=(1, 400))
    # a is 0.5 worse than b on every face, but one seed is 2 worse: the seeds' spread must widen
    # the interval beyond the faces-only one
    a = faces + np.array([[0.0], [0.0], [1.5]]) + 0.5
    b = np.repeat(faces, 3, axis=0)
    diff = seeded_difference(a, b)
    assert diff.delta == pytest.approx(1.0) and diff.n == 400
    assert diff.low < 0.6 and diff.high > 1.9
    one = seeded_difference(a[:1], b[:1])
    assert one.delta == pytest.approx(0.5) and one.high - one.low < 1e-9  # constant difference
    teacher = seeded_difference(a, faces)  # one row broadcast over the seeds
    assert teacher.delta == pytest.approx(diff.delta)
    with pytest.raises(ValueError, match="same seeds and faces"):
        seeded_difference(a, b[:, :10])
    with pytest.raises(ValueError, match=r"\[seeds, n\]"):
        seeded_difference(a[0], b[0])
