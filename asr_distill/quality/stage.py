"""The filter and review stages from files to files: one implementation for the CLI and the pipeline.

``asr-distill filter``, ``asr-distill review`` and the pipeline's filter and review stages
build a :class:`FilterOptions` or :class:`ReviewOptions` (every check of an option lives in
their ``__post_init__``) and call :func:`run_filter`, :func:`run_review_export` or
:func:`run_review_import`; the files these write are the stage's whole output.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jsonl import atomic_write_jsonl, atomic_write_text
from ..records import TeacherLabel
from .calibrate import Calibration, calibrate, write_calibration
from .correct import LEXICON_MIN_SIMILARITY, CorrectionConfig, read_lexicon
from .edits import check_reviewer
from .filter import FilterResult, PseudoLabel, filter_labels, read_labels, read_pseudo_labels
from .filter_report import DEFAULT_REVIEW_FRACTION
from .review import ReviewExport, ReviewImport, apply_review, export_review, read_edits
from .review_queue import PAD, UNITS, Pad
from .rules import CONFIDENCE_RULE, MIN_AGREEMENT, FilterConfig, check_confidence_choice

log = logging.getLogger(__name__)

# ``language`` value that turns the wrong_language rule off.
ANY_LANGUAGE = "any"
CALIBRATION_FILES = ("calibration.json", "calibration.png")


@contextmanager
def staged(out: Path, last: Iterable[str] = ()) -> Iterator[Path]:
    """A hidden folder inside ``out`` to write a stage's files in; on success each replaces its namesake.

    The files of one run appear together (``last`` after the others: the report that names
    them), so a kill mid-write leaves the previous set, not kept from one run and dropped
    from another. The folder's name (``.staging.*.tmp``) is one the output guard knows as ours.
    """
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging.", suffix=".tmp", dir=out))
    try:
        yield stage
        names = sorted(f.name for f in stage.iterdir())
        for name in [n for n in names if n not in last] + [n for n in names if n in last]:
            os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@dataclass(frozen=True)
class FilterOptions:
    """Every option of ``asr-distill filter``, named as its flags and the pipeline's ``filter`` keys.

    Attributes:
        score: confidence score for ``low_confidence`` (None: agreement_entropy with a second
            decoding, else avg_logprob).
        threshold / keep / target_wer: at most one; how the confidence threshold is chosen
            (none: the score's documented default).
        keep_at_least: a retention floor: a threshold keeping less is lowered to keep this share
            (reference-free; for pools where a default set elsewhere keeps too little).
        lexicon: a file of domain words, one per line; near-misses are replaced.
        lexicon_similarity: rapidfuzz ratio 0-100 a replacement needs (None: 85).
        normaliser: applied to the kept text (``none`` keeps the teacher's form).
        language: the expected language; ``any`` or None turns wrong_language off.
        min_agreement: teacher_disagreement below this (None: 0.5).
        review_fraction: share of kept labels the report's review load counts.
    """

    score: str | None = None
    threshold: float | None = None
    keep: float | None = None
    target_wer: float | None = None
    keep_at_least: float | None = None
    lexicon: str | None = None
    lexicon_similarity: float | None = None
    normaliser: str = "spoken_form"
    language: str | None = "en"
    min_agreement: float | None = None
    review_fraction: float = DEFAULT_REVIEW_FRACTION

    def __post_init__(self) -> None:
        check_confidence_choice(self.score, self.threshold, self.keep, self.target_wer, self.keep_at_least)
        self._correction(lexicon=())  # checks normaliser and lexicon_similarity
        if not 0 <= self.review_fraction <= 1:
            raise ValueError(f"review_fraction is a fraction in [0, 1], got {self.review_fraction}")

    def _correction(self, lexicon: tuple[str, ...]) -> CorrectionConfig:
        return CorrectionConfig(
            normaliser=self.normaliser,
            lexicon=lexicon,
            lexicon_min_similarity=self.lexicon_similarity or LEXICON_MIN_SIMILARITY,
        )

    def filter_config(self) -> FilterConfig:
        """The rules' configuration (reads the lexicon file)."""
        return FilterConfig(
            score=self.score,
            threshold=self.threshold,
            keep=self.keep,
            target_wer=self.target_wer,
            keep_at_least=self.keep_at_least,
            language=None if self.language in (None, ANY_LANGUAGE) else self.language,
            min_agreement=MIN_AGREEMENT if self.min_agreement is None else self.min_agreement,
            correction=self._correction(read_lexicon(self.lexicon) if self.lexicon else ()),
        )


def run_filter(
    labels: Path, out: Path, options: FilterOptions, second: Path | Sequence[Path] | None = None
) -> FilterResult:
    """Filter the teacher labels in ``labels`` and write the stage's files in ``out``.

    Writes kept.jsonl, dropped.jsonl, filter_report.json and, where labels have references,
    calibration.json and calibration.png (see :func:`write_filter_outputs`).

    Args:
        labels: teacher labels written by ``asr-distill label``.
        out: the output folder.
        options: the filter's options.
        second: the same audio labeled by a second model (enables the agreement scores), or
            several such files (each another opinion for the consensus scores; the
            pairwise agreement scores use the first).

    Raises:
        FileNotFoundError: ``labels`` does not exist.
        ValueError: ``labels`` holds no labels, or the options cannot be met (see
            :func:`~asr_distill.quality.filter.filter_labels`).
    """
    labels, out = Path(labels), Path(out)
    if not labels.is_file():
        raise FileNotFoundError(f"{labels} does not exist (give the labels written by `asr-distill label`)")
    teacher = read_labels(labels)
    if not teacher:
        raise ValueError(f"{labels} holds no labels: nothing to filter")
    by_id = read_second_opinions(teacher, second)
    config = options.filter_config()
    result = filter_labels(teacher, second=by_id, config=config, review_fraction=options.review_fraction)
    write_filter_outputs(result, out, labels_path=labels, second_path=second)
    return result


def second_paths(second: Path | Sequence[Path] | None) -> list[Path]:
    """The second-opinion files as a list, whether none, one or several were given."""
    if second is None:
        return []
    return [Path(second)] if isinstance(second, (str, os.PathLike)) else [Path(p) for p in second]


def read_second_opinions(
    teacher: Sequence[TeacherLabel], second: Path | Sequence[Path] | None
) -> Mapping[str, TeacherLabel | tuple[TeacherLabel, ...]] | None:
    """Each id's other decodings, read from one or several label files.

    One file gives id -> label, as the filter always took it; several give id -> the tuple
    of labels the files hold for it, in the order given. An id no file has is left out.
    """
    paths = second_paths(second)
    maps = []
    for path in paths:
        by_id = {lab.id: lab for lab in read_labels(path)}
        missing = sum(lab.id not in by_id for lab in teacher)
        if missing:
            log.warning(
                "%d labels have no second decoding in %s; their agreement is undefined "
                "(they count as least confident)",
                missing,
                path,
            )
        maps.append(by_id)
    if len(maps) <= 1:
        return maps[0] if maps else None
    merged = {lab.id: tuple(m[lab.id] for m in maps if lab.id in m) for lab in teacher}
    return {k: v for k, v in merged.items() if v}


def write_filter_outputs(
    result: FilterResult,
    out: Path,
    labels_path: Path | None = None,
    second_path: Path | Sequence[Path] | None = None,
) -> dict[str, Any]:
    """kept.jsonl, dropped.jsonl, filter_report.json and, where references exist, calibration.json/.png.

    The report's ``second_labels`` is the second file's path, or the list of them when
    there were several.

    Returns:
        the report as written to filter_report.json.
    """
    out = Path(out)
    report = result.report.to_dict()
    report["labels"] = str(labels_path) if labels_path else None
    seconds = [str(p) for p in second_paths(second_path)]
    report["second_labels"] = seconds[0] if len(seconds) == 1 else (seconds or None)
    cal = result.calibration or _reference_curves(result)
    with staged(out, last=("filter_report.json",)) as tmp:
        atomic_write_jsonl(tmp / "kept.jsonl", (p.to_dict() for p in result.kept))
        atomic_write_jsonl(tmp / "dropped.jsonl", (p.to_dict() for p in result.dropped))
        if cal is not None:
            write_calibration(cal, tmp / CALIBRATION_FILES[0], tmp / CALIBRATION_FILES[1])
            report["calibration"] = str(out / CALIBRATION_FILES[0])
        atomic_write_text(tmp / "filter_report.json", json.dumps(report, indent=1) + "\n")
        if cal is None:  # an earlier run's curves would contradict this report
            for name in CALIBRATION_FILES:
                (out / name).unlink(missing_ok=True)
    return report


def _reference_curves(result: FilterResult) -> Calibration | None:
    """Every score's label WER vs retention where labels have references, though none chose the threshold.

    The curves say how good each score is on this data; the labels every other rule dropped
    are left out, as calibration leaves them out.
    """
    r = result.report
    if not r.references:
        return None
    ok = [p for p in (*result.kept, *result.dropped) if p.ref_text is not None and _other_rules_keep(p)]
    if not ok:
        return None
    nan = float("nan")
    return calibrate(
        {n: [nan if p.scores[n] is None else p.scores[n] for p in ok] for n in ok[0].scores},
        [p.ref_text for p in ok],
        [p.text for p in ok],
        keep=r.retention if r.retention > 0 else 1.0,
        score=r.score,
        total=r.references,
    )


def _other_rules_keep(p: PseudoLabel) -> bool:
    return all(v.keep for v in p.filter_history if v.rule != CONFIDENCE_RULE)


@dataclass(frozen=True)
class ReviewOptions:
    """Every option of ``asr-distill review``, named as its flags and the pipeline's ``review`` keys.

    Attributes:
        k: export the first K labels of the review queue (None, without ``band`` or
            ``minutes``: 10 % of the labels).
        band: export the labels with ``band[0] <= score < band[1]`` instead.
        minutes: export as many as fit in this many minutes of listening instead.
        unit: ``word`` (doubtful words highlighted and played, labels ranked by expected
            errors fixed per second of listening) or ``utterance`` (whole clips, least
            confident first).
        reviewer: who reviewed, for the audit (None: the name the review page saved).
        pad: seconds the page plays around each doubtful run, ``SECONDS`` either side or
            ``BEFORE:AFTER`` (None: :data:`~asr_distill.quality.review_queue.PAD`, measured
            on speech with known word boundaries; widen it where word timings are worse).
        calibrate_on: transcribed clips of the same pool, labeled and filtered alike (a
            filter's output folder, or its kept/dropped file; labels carry ``ref_text``):
            the word confidences that flag and rank are refitted on them
            (:mod:`~asr_distill.quality.word_calibration`), or the ``word_calibration.json``
            an earlier export saved. The labels keep their own.
    """

    k: int | None = None
    band: tuple[float, float] | None = None
    minutes: float | None = None
    unit: str = "word"
    reviewer: str | None = None
    pad: str | None = None
    calibrate_on: str | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.k, self.band, self.minutes)) > 1:
            raise ValueError("give only one of k, band, minutes")
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")
        if self.minutes is not None and not self.minutes >= 0:
            raise ValueError(f"minutes must be >= 0, got {self.minutes}")
        self.span_pad()  # a bad pad fails here, before any work

    def span_pad(self) -> Pad:
        """The pad as seconds before and after a run."""
        return PAD if self.pad is None else Pad.parse(str(self.pad))


def run_review_export(kept: Path, out: Path, options: ReviewOptions) -> ReviewExport:
    """Write review.tsv, review.html and review_report.json in ``out`` for the doubtful labels of ``kept``.

    Args:
        kept: kept.jsonl written by the filter stage.
        out: the output folder.
        options: which labels to export.
    """
    labels = read_pseudo_labels(kept)
    fitted: dict[str, Any] = {}
    if options.calibrate_on:
        labels, fitted = _calibrated(labels, kept, Path(options.calibrate_on), Path(out))
    k = options.k
    if k is None and options.band is None and options.minutes is None:
        k = math.ceil(DEFAULT_REVIEW_FRACTION * len(labels))
    band = tuple(options.band) if options.band else None
    pad = options.span_pad()
    r = export_review(labels, out, k=k, band=band, minutes=options.minutes, unit=options.unit, pad=pad)
    report = {**r.__dict__, "pad_s": pad._asdict(), "kept": str(kept), **fitted}
    atomic_write_text(Path(out) / "review_report.json", json.dumps(report, indent=1) + "\n")
    return r


def _calibrated(
    labels: list[PseudoLabel], kept: Path, transcribed: Path, out: Path
) -> tuple[list[PseudoLabel], dict[str, Any]]:
    """``labels`` with word confidences fitted on ``transcribed`` (or saved in it); the fit goes in ``out``.

    A word's share of the pool counts the filter's dropped labels too (beside ``kept``).
    """
    from .word_calibration import WordCalibration, fit_word_calibration, read_transcribed

    try:
        if transcribed.suffix == ".json":
            cal = WordCalibration.load(transcribed)
        else:
            cal = fit_word_calibration(read_transcribed(transcribed))
    except ValueError as e:
        raise ValueError(f"calibrate_on {transcribed}: {e}") from None
    beside = kept.with_name("dropped.jsonl")
    pool = labels + (read_pseudo_labels(beside) if beside.is_file() else [])
    out.mkdir(parents=True, exist_ok=True)
    cal.save(out / "word_calibration.json")
    note = {"fitted_on": str(transcribed), "words": cal.words, "wrong": cal.wrong}
    return cal.apply(labels, pool=pool), {"word_calibration": note}


def run_review_import(
    kept: Path, edits: Path, out: Path, options: ReviewOptions, dropped: Path | None = None
) -> ReviewImport:
    """Apply a reviewer's edits to ``kept``: kept.jsonl, dropped.jsonl in ``out``; audit lines appended.

    Args:
        kept: the kept.jsonl that was exported.
        edits: review_edits.json saved by the review page, or the edited review.tsv.
        out: the output folder.
        options: ``reviewer`` names who reviewed when ``edits`` does not.
        dropped: the filter's dropped.jsonl, carried over (None: the one beside ``kept``, if any).

    Raises:
        ValueError: nobody is named as reviewer, or ``edits`` is malformed.
        FileNotFoundError: ``dropped`` was given and does not exist.
    """
    labels = read_pseudo_labels(kept)
    beside = Path(kept).with_name("dropped.jsonl")
    if dropped is not None:
        carried = read_pseudo_labels(dropped)
    else:
        carried = read_pseudo_labels(beside) if beside.is_file() else []
    decisions, saved_reviewer, time = read_edits(edits)
    reviewer = check_reviewer(options.reviewer, "--reviewer") or saved_reviewer
    if not reviewer:
        raise ValueError("reviewer: say who reviewed (--reviewer NAME; the TSV does not record it)")
    r = apply_review(labels, carried, decisions, reviewer=reviewer, time=time)
    out = Path(out)
    with staged(out) as tmp:
        atomic_write_jsonl(tmp / "kept.jsonl", (p.to_dict() for p in r.kept))
        atomic_write_jsonl(tmp / "dropped.jsonl", (p.to_dict() for p in r.dropped))
    append_audit(out / "review_audit.jsonl", r.audit)
    return r


def append_audit(path: Path, audit: Iterable[dict]) -> None:
    """Add this import's decisions to the audit trail; earlier imports' lines are never rewritten."""
    data = "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in audit).encode("utf-8")
    with open(path, "ab") as f:
        if f.tell() and not _ends_with_newline(path):
            data = b"\n" + data  # a line torn by a kill stays, as it was, on a line of its own
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


__all__ = [
    "ANY_LANGUAGE",
    "FilterOptions",
    "ReviewOptions",
    "append_audit",
    "read_second_opinions",
    "run_filter",
    "run_review_export",
    "run_review_import",
    "second_paths",
    "staged",
    "write_filter_outputs",
]
