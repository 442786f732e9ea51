"""Check that an official encoder file loads into MFuser's encoders (the logic of ``tools/check_pretrained.py``).

::

    result = check_pretrained("pretrained/ViT-L-14-336px.pt", "clip")   # full-size towers, non-strict loads
    print(result.summary())                                             # counts and key names per tower
    result.status                                                       # 0: every key fits, 1: not

The file is read once; each tower of its family (:data:`~mfuser.modeling.encoders.families.FAMILIES`) is built and
loads it with ``strict=False``, so every missing / unexpected key is listed instead of stopping at the first.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping

from .checkpoints import CheckpointMismatchError, LoadReport, describe_state_dict, read_state_dict
from .families import TOWER_LABELS, get_family

__all__ = ["TowerCheck", "PretrainedCheck", "check_pretrained"]


@dataclass
class TowerCheck:
    """How one tower loaded the file: its :class:`LoadReport`, or the error of a load that could not proceed
    (e.g. shapes of another model size)."""

    tower: str
    model: str
    num_params: int
    report: LoadReport | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        return TOWER_LABELS.get(self.tower, self.tower)

    @property
    def ok(self) -> bool:
        return self.error is None and self.report is not None and self.report.ok


@dataclass
class PretrainedCheck:
    """Result of :func:`check_pretrained`. ``status``: 0 when every tower loaded with no missing or unexpected
    key, else 1 (``tools/check_pretrained.py`` exits with it; an unreadable file raises instead)."""

    path: str
    kind: str
    format: str
    num_entries: int
    description: str
    towers: List[TowerCheck] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.towers)

    @property
    def status(self) -> int:
        return 0 if self.ok else 1

    def summary(self, max_names: int = 50, verbose: bool = False) -> str:
        """Per tower: the counts, then the missing / unexpected / adapted names (matched and ignored too when
        ``verbose``), at most ``max_names`` per category (0: all); then the verdict."""
        lines: List[str] = []
        for t in self.towers:
            if t.error is not None:
                lines.append(f"[{t.label}] {t.model}: ERROR: {t.error}")
                continue
            c = t.report.counts()
            lines.append(f"[{t.label}] {t.model} ({t.num_params:,} params): matched {c['matched']}, "
                         f"missing {c['missing']}, unexpected {c['unexpected']}, adapted {c['adapted']}, "
                         f"ignored {c['ignored']}")
            lines += _names("missing", t.report.missing, max_names)
            lines += _names("unexpected", t.report.unexpected, max_names)
            lines += _names("adapted", t.report.adapted, max_names)
            if verbose:
                lines += _names("matched", t.report.matched, max_names)
                lines += _names("ignored (other tower / recomputed / pretraining-only)", t.report.ignored, max_names)
        if not self.ok:
            lines.append(f"note: the file {self.description}")
        verdict = "OK: 0 missing, 0 unexpected" if self.ok else "FAILED: see missing / unexpected keys above"
        lines.append(f"{verdict} ({self.seconds:.1f}s)")
        return "\n".join(lines)


def _names(title: str, names: List[str], limit: int) -> List[str]:
    if not names:
        return []
    shown = names if limit <= 0 else names[:limit]
    out = [f"  {title} ({len(names)}):"] + [f"    {n}" for n in shown]
    if len(shown) < len(names):
        out.append(f"    ... {len(names) - len(shown)} more (use --max-names 0 to list all)")
    return out


def check_pretrained(
    path: str,
    kind: str,
    encoder_kwargs: Mapping[str, Mapping] | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> PretrainedCheck:
    """Read the official ``kind`` file at ``path`` and load it into every tower of the family, non-strictly.

    Args:
        kind: a family name of :data:`~mfuser.modeling.encoders.families.FAMILIES` (``dinov2`` / ``clip`` /
            ``eva02`` / ``siglip``).
        encoder_kwargs: ``{"vision" | "text": constructor kwargs}`` for the towers; absent towers are built at full
            size (e.g. the tests pass the family's ``tiny_towers`` to check tiny files).
        log: called with progress lines (file read, encoders built) as they happen.

    Returns:
        :class:`PretrainedCheck`; a tower whose load raises :class:`CheckpointMismatchError` is recorded as failed.

    Raises:
        CheckpointError: the file is missing, unreadable or not a state dict.
        ValueError: unknown ``kind`` or tower.
    """
    family = get_family(kind)
    encoder_kwargs = dict(encoder_kwargs or {})
    unknown = sorted(set(encoder_kwargs) - set(family.towers))
    if unknown:
        raise ValueError(f"{kind!r} has no tower(s) {unknown} (towers: {sorted(family.towers)})")
    log = log or (lambda line: None)
    t0 = time.time()
    sd, fmt = read_state_dict(path)
    log(f"{path}: {fmt}, {len(sd)} entries, read in {time.time() - t0:.1f}s")
    t1 = time.time()
    encoders: Dict[str, object] = {t: family.build(t, **encoder_kwargs.get(t, {})) for t in family.towers}
    size = "full-size" if not encoder_kwargs else "custom-size"
    log(f"built {size} {kind} encoders in {time.time() - t1:.1f}s")
    result = PretrainedCheck(path=str(path), kind=kind, format=fmt, num_entries=len(sd),
                             description=describe_state_dict(sd))
    for tower, enc in encoders.items():
        check = TowerCheck(tower=tower, model=enc.model_name, num_params=sum(p.numel() for p in enc.parameters()))
        try:
            check.report = enc.load_official_state_dict(sd, source=str(path), strict=False)
        except CheckpointMismatchError as e:  # e.g. shapes of another model size
            check.error = str(e)
        result.towers.append(check)
    result.seconds = time.time() - t0
    return result
