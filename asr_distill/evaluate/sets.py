"""Named test sets, the model each student started from, and regressions against it.

An evaluation measures every model on every set: ``in_domain`` (the data a student was made
for) and any number of out-of-domain sets, so a student that gained in its domain by losing
elsewhere shows it. A set whose manifest is absent is skipped with its reason recorded; the
in-domain set cannot be. A *regression* is a student significantly worse (paired bootstrap)
than the model it started from on some set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..records import Evaluation, Interval, Record, UtteranceScore
from ..safe_load import load_checkpoint
from .options import Scoring

log = logging.getLogger(__name__)

IN_DOMAIN = "in_domain"


@dataclass(frozen=True)
class Regression(Record):
    """A model significantly worse than its baseline on one test set.

    ``delta`` is WER(model) - WER(baseline) in points (positive: worse), with its interval;
    ``p_value`` is the share of resamples in which the baseline was *not* better.
    """

    set: str
    model: str
    baseline: str
    wer: float
    baseline_wer: float
    delta: float
    delta_ci: Interval
    p_value: float


@dataclass(frozen=True)
class EvaluationSuite(Record):
    """Every model on every named test set, with the regressions found.

    ``sets`` holds one :class:`Evaluation` per set, the primary set (``in_domain`` when there
    is one) first; ``baselines`` maps a model to the model it started from; ``skipped`` maps
    a set that was not measured to the reason.
    """

    sets: dict[str, Evaluation]
    regressions: tuple[Regression, ...] = ()
    baselines: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    out_dir: str | None = None

    @property
    def primary(self) -> Evaluation:
        """The in-domain evaluation (the first set): what a single-manifest evaluation was."""
        return next(iter(self.sets.values()))


def parse_set_spec(spec: str) -> tuple[str, str]:
    """``"an4=../an4/test.jsonl"`` -> ``("an4", "../an4/test.jsonl")``; a bare path is ``in_domain``."""
    name, sep, path = spec.partition("=")
    if sep and name and path:
        return name, path
    if sep:
        raise ValueError(f"a test set is NAME=MANIFEST, got {spec!r}")
    return IN_DOMAIN, spec


def named_sets(sets: str | Path | Mapping[str, str | Path]) -> dict[str, Path]:
    """Named manifests, ``in_domain`` first; a single manifest is the in-domain set.

    Raises:
        ValueError: no set, or a name that cannot be a folder name.
    """
    named = {IN_DOMAIN: sets} if isinstance(sets, str | Path) else dict(sets)
    if not named:
        raise ValueError("no test set given")
    for name in named:
        if not name or "@" in name or "/" in name:
            raise ValueError(f"test set names are plain words (no '@' or '/'), got {name!r}")
    order = sorted(named, key=lambda n: n != IN_DOMAIN)  # stable: the caller's order after in_domain
    return {n: Path(named[n]) for n in order}


def available(sets: Mapping[str, Path]) -> tuple[dict[str, Path], dict[str, str]]:
    """The sets whose manifests exist, and why each other one is skipped (logged).

    A set whose manifest has no reference transcript at all (an unlabeled pool) is skipped too.

    Raises:
        FileNotFoundError: the in-domain (first) set is missing: there is nothing to compare on.
        ValueError: the in-domain set has no reference transcript.
    """
    present, skipped = {}, {}
    for k, (name, path) in enumerate(sets.items()):
        if not path.is_file():
            why, error = f"manifest {path} does not exist", FileNotFoundError
        elif not _has_references(path):
            why = f"manifest {path} has no reference transcript (every text is empty): nothing to score"
            error = ValueError
        else:
            present[name] = path
            continue
        if k == 0:
            raise error(f"test set {name}: {why}")
        skipped[name] = why
        log.warning("skipping test set %s: %s", name, why)
    return present, skipped


def _has_references(path: Path) -> bool:
    """Whether any line of the manifest has a non-empty ``text`` (an unlabeled pool has none)."""
    from ..jsonl import iter_jsonl

    return any(
        isinstance(d, dict) and isinstance(d.get("text"), str) and d["text"].strip()
        for _, d in iter_jsonl(path)
    )


def started_from(model: Any) -> str | None:
    """The model an exported student's ``.pt`` says it started from (``init``, else its teacher).

    None for anything else: a model name, a CTranslate2 folder, a file without the description.
    """
    path = Path(str(model))
    if path.suffix != ".pt" or not path.is_file():
        return None
    ckpt = load_checkpoint(path)
    desc = ckpt.get("asr_distill") if isinstance(ckpt, dict) else None
    if not isinstance(desc, dict):
        return None
    init = (desc.get("training_config") or {}).get("init")
    if init and init != "teacher":
        return str(init)
    teacher = desc.get("teacher") or {}
    return str(teacher.get("name") or teacher.get("model")) if isinstance(teacher, dict) else None


def resolve_baselines(pairs: Sequence[tuple[str, Any]], given: Mapping[str, str] | None) -> dict[str, str]:
    """Model name -> the evaluated model it started from.

    ``given`` names them (``{"student": "tiny.en"}``: both are row names); None infers them
    from each student's self-description, matched to a row by name or model.

    Raises:
        ValueError: a given name that is not one of the models evaluated.
    """
    names = [n for n, _ in pairs]
    if given is not None:
        for model, base in given.items():
            for n in (model, base):
                if n not in names:
                    raise ValueError(f"baseline {model}={base}: {n!r} is not a model evaluated ({names})")
        return dict(given)
    found = {}
    for name, model in pairs:
        init = started_from(model)
        match = next((n for n, m in pairs if init is not None and n != name and init in (n, str(m))), None)
        if match is not None:
            found[name] = match
            log.info(
                "%s started from %s (its checkpoint says %s): regressions are judged against it",
                name,
                match,
                init,
            )
    return found


def find_regressions(
    scores: Mapping[str, Mapping[str, Sequence[UtteranceScore]]],
    baselines: Mapping[str, str],
    scoring: Scoring,
) -> list[Regression]:
    """Each (set, model) where the model is significantly worse than its baseline.

    Args:
        scores: set name -> model name -> per-utterance scores.
        baselines: model -> the model it started from.
        scoring: the bootstrap settings; "significantly" is the baseline's paired win
            (:attr:`PairedComparison.a_better`).
    """
    found = []
    for set_name, by_model in scores.items():
        for model, base in baselines.items():
            if model not in by_model or base not in by_model:
                continue
            c = scoring.paired(by_model[base], by_model[model], names=(base, model))
            if not c.a_better:
                continue
            ci = Interval(-c.delta_ci.high, -c.delta_ci.low, c.delta_ci.level, c.delta_ci.resamples)
            found.append(Regression(set_name, model, base, c.wer_b, c.wer_a, -c.delta, ci, c.p_value))
            log.warning(
                "REGRESSION on %s: %s %.2f%% vs %s %.2f%% WER (+%.2f points, p=%.3f)",
                set_name, model, c.wer_b, base, c.wer_a, -c.delta, c.p_value,
            )  # fmt: skip
    return found


__all__ = [
    "IN_DOMAIN",
    "EvaluationSuite",
    "Regression",
    "available",
    "find_regressions",
    "parse_set_spec",
    "resolve_baselines",
    "started_from",
    "named_sets",
]
