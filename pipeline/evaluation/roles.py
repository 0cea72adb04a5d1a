"""The one table of Table-5 roles: what each kind of row is, how it is named and where it comes from.

A *role* is one kind of model in Table 5. The report (:mod:`pipeline.evaluation.results`,
:mod:`pipeline.evaluation.report`), the comparisons (:mod:`pipeline.evaluation.comparisons`), the
bar chart (:mod:`pipeline.evaluation.figures`) and the help text of ``hpekd report`` all read
this table, so a role's label, file prefix and checkpoint kind are spelt once.

Evaluation files are named ``<prefix><backbone>.json`` (``hpekd evaluate --metrics``) and their
per-face errors ``<prefix><backbone>.parquet`` (``--errors``); ``kind`` is what ``hpekd evaluate``
records for the checkpoint (``stage1`` or ``student``), and the report refuses a file whose
recorded kind disagrees with its name. ``students`` names the top-level params list whose entries
make the role's DVC stages (``None``: the role is the teacher's, or derived).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    name: str  # the key in code and in report.json, e.g. "nokd"
    label: str  # Table-5 row label; "{b}" is replaced by the display backbone, e.g. "ResNet18"
    kind: str | None  # checkpoint kind `hpekd evaluate` records; None: not an evaluation file
    prefix: str | None  # evaluation / errors file prefix; None: the row does not come from such a file
    students: str | None  # top-level params list that makes the role's stages, if any
    about: str  # what the row is, for the caption under Table 5 and the CLI help
    cmap: str  # matplotlib colour map of its bars

    def row_label(self, backbone: str) -> str:
        return self.label.format(b=display_backbone(backbone))

    @property
    def short(self) -> str:
        """The label without a backbone: ``Student without KD``, ``KD-online``."""
        return self.label.replace("-{b}", "")


ROLES: dict[str, Role] = {r.name: r for r in (  # Table-5 order
    Role("mean", "Predict the training mean", None, None, None,
         "predicting the mean training pose for every face", "Greens"),
    Role("base", "Base-{b}", "stage1", "base-", None,
         "the teacher network (stage 1)", "Greys"),
    Role("ensemble", "Ensemble-{b}", "stage1", "ensemble-", None,
         "the teacher's convolutional ensemble (eq. 6)", "Blues"),
    Role("kd", "KD-{b}", "student", "kd-", "students",
         "stage-2 student trained on the ensemble's soft labels from the label store (eq. 7)", "Oranges"),
    Role("online", "KD-online-{b}", "student", "online-", "students_online",
         "the same student distilled from the teacher run online (no label store)", "YlOrBr"),
    Role("nokd", "Student-{b} without KD", "student", "nokd-", "students_control",
         "the same student recipe with the distillation term off (kd_weight 0)", "Purples"),
    Role("soft", "Soft-label-{b} (no teacher)", "student", "soft-", "students_soft",
         "the same student recipe with a Gaussian soft label around the ground truth in place of the "
         "teacher's distribution (train_student.soft_label_sigma; no teacher at all)", "Reds"),
)}

FILE_ROLES = tuple(name for name, r in ROLES.items() if r.prefix is not None)  # roles with evaluation files
STUDENT_ROLES = tuple(name for name, r in ROLES.items() if r.kind == "student")  # stage-2 checkpoints
BACKBONE_RE = r"resnet\d+"
FILE_RE = re.compile(rf"^({'|'.join(ROLES[n].prefix or '' for n in FILE_ROLES)})({BACKBONE_RE})\.json$")
_BY_PREFIX = {ROLES[n].prefix: n for n in FILE_ROLES}



@dataclass(frozen=True)
class Contrast:
    """One comparison Table 5 is read for: the row of role ``a`` minus the row of role ``b``."""

    a: str
    b: str
    against: str  # how a finding names b, e.g. "its teacher"
    means: str  # what the difference measures ("" when the sentence says it)


# In the order the findings and the differences table list them (per row of role ``a``). ``b`` is
# the same backbone's row, except the base network (and its ensemble), of which there is one.
# "nokd − base" is always there so that a student beating its teacher is never read as an effect
# of KD: the student recipe without KD may beat the teacher too. With a teacher-free soft-label
# student, "kd − soft" asks whether the teacher adds anything over soft labels around the label,
# "soft − nokd" whether such soft labels alone help.
COMPARISONS: tuple[Contrast, ...] = (
    Contrast("ensemble", "base", "the single network", ""),
    Contrast("kd", "base", "its teacher", ""),
    Contrast("kd", "nokd", "the same student trained without KD", "what distillation adds"),
    Contrast("kd", "online", "the same student distilled online", "what caching the teacher's labels costs"),
    Contrast("kd", "soft", "the teacher-free soft-label student", "what the teacher adds over soft labels"),
    Contrast("nokd", "base", "the teacher network",
             "the student recipe alone, with no teacher; KD − without KD, not KD − teacher, is the effect of KD"),
    Contrast("soft", "nokd", "the same student trained without KD", "what soft labels alone add, with no teacher"),
)
SHARED = ("base",)  # roles compared across backbones: the one teacher network


def display_backbone(name: str) -> str:
    """``resnet18`` → ``ResNet18``; other names unchanged."""
    m = re.fullmatch(r"resnet(\d+)", name)
    return f"ResNet{m.group(1)}" if m else name


def role_of_file(name: str) -> tuple[str, str] | None:
    """``nokd-resnet18.json`` → ``("nokd", "resnet18")``; ``None`` for any other file name."""
    m = FILE_RE.match(name)
    return (_BY_PREFIX[m.group(1)], m.group(2)) if m else None


def file_name(role: str, backbone: str, suffix: str = ".json") -> str:
    """The evaluation (``.json``) or per-face errors (``.parquet``) file name of a role's row."""
    prefix = ROLES[role].prefix
    if prefix is None:
        raise ValueError(f"role {role!r} has no evaluation file (roles with files: {list(FILE_ROLES)})")
    return f"{prefix}{backbone}{suffix}"


def help_text() -> str:
    """One line per role with a file, for ``hpekd report --help``."""
    return "; ".join(f"{ROLES[n].prefix}<backbone> = {ROLES[n].about}" for n in FILE_ROLES)
