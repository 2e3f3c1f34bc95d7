"""The files an evaluation leaves, and reading them back.

Per model and test set, in ``OUT/<name>/`` for the in-domain set and ``OUT/<name>@<set>/``
for each other one: ``hyps.jsonl`` and ``timing.json`` (the decoding, reused by a rerun),
``alignment.jsonl`` and ``alignment.txt`` (every error, inspectable) and ``result.json``;
for the whole run, ``OUT/summary.json`` and ``OUT/table.md``. ``timing.json`` also holds the
decoding's ``inputs`` (:func:`decoding_inputs`): saved hypotheses are reused only for the same
manifest bytes, model files and options, never for a re-exported student or an edited set.

``summary.json`` keeps the in-domain set's figures at its top level (``manifest``,
``models``, ``comparisons``), as a single-manifest evaluation always wrote them, and adds
``sets`` (every set's), ``regressions``, ``baselines`` and ``skipped_sets``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..jsonl import atomic_write_jsonl, atomic_write_text, read_jsonl
from ..records import Evaluation, ModelResult, Transcription, UtteranceScore, from_dict, to_dict
from .sets import IN_DOMAIN, EvaluationSuite, Regression
from .tables import format_comparisons, format_regressions, format_sets, format_table

RESULT_NAME = "result.json"
HYPS_NAME = "hyps.jsonl"
TIMING_NAME = "timing.json"
ALIGNMENT_NAME = "alignment.jsonl"
ALIGNMENT_TEXT_NAME = "alignment.txt"
SUMMARY_NAME = "summary.json"
TABLE_NAME = "table.md"
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
_OP_MARK = {"substitute": "S", "delete": "D", "insert": "I", "equal": " "}


def slug(name: str) -> str:
    """A model name as a folder name ("runs/x/student.pt" -> "runs_x_student.pt")."""
    return _SLUG.sub("_", name).strip("_") or "model"


def model_folder(out: Path, model: str, test_set: str = IN_DOMAIN) -> Path:
    """``OUT/<model>`` for the in-domain set, ``OUT/<model>@<set>`` for another (a slug has no ``@``)."""
    return out / (slug(model) if test_set == IN_DOMAIN else f"{slug(model)}@{slug(test_set)}")


def _model_identity(model: Any) -> Any:
    """A model as reuse must tell it apart: a path by each file's size and mtime, a name as given.

    Size and mtime, not content: a rewritten file (a re-export) counts as new even when equal,
    which costs a decoding, never a wrong result; hashing a multi-GB checkpoint per set would not.
    """
    source = getattr(model, "source", model)  # a loaded Teacher: the files it came from
    name = getattr(model, "name", None)
    try:
        path = Path(os.fspath(source))
    except TypeError:
        return repr(model)
    if not path.exists():
        return [name, str(source)] if name else str(source)
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    stats = [(str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return [name, str(path.resolve()), stats]


def decoding_inputs(model: Any, manifest: str | Path, options: Any = None, backend: str = "whisper") -> str:
    """A digest of what a decoding depends on: the manifest's bytes, the model's files, the options."""
    with open(manifest, "rb") as f:
        manifest_sha = hashlib.file_digest(f, "sha256").hexdigest()
    opts = options.as_dict() if hasattr(options, "as_dict") else repr(options)
    key = {"manifest": manifest_sha, "model": _model_identity(model), "options": opts, "backend": backend}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def save_transcription(t: Transcription, folder: Path, inputs: str | None = None) -> None:
    """Hypotheses then timing, each atomically: timing's presence means the set is whole.

    ``inputs`` (:func:`decoding_inputs`) is stored so that a rerun reuses them only for the same inputs.
    """
    atomic_write_jsonl(
        folder / HYPS_NAME,
        (
            {"id": i, "ref": r, "hyp": h, "duration": d, "speaker": s}
            for i, r, h, d, s in zip(t.ids, t.refs, t.hyps, t.durations, t.speakers, strict=True)
        ),
    )
    timing = {
        "model": t.model,
        "source": t.source,
        "params": t.params,
        "audio_s": t.audio_s,
        "wall_s": t.wall_s,
        "skipped": t.skipped,
    }
    if inputs is not None:
        timing["inputs"] = inputs
    atomic_write_text(folder / TIMING_NAME, json.dumps(timing, indent=2) + "\n")


def saved_inputs(folder: Path) -> str | None:
    """The ``inputs`` digest a saved decoding was made from (None: none saved), for copying it on."""
    timing_path = folder / TIMING_NAME
    if not timing_path.is_file():
        return None
    return json.loads(timing_path.read_text()).get("inputs")


def load_transcription(folder: Path, inputs: str | None = None) -> Transcription | None:
    """A transcription saved by :func:`save_transcription`, or None if it is incomplete.

    Also None when ``inputs`` is given and the saved decoding was made from others (or saved
    without them).
    """
    timing_path, hyps_path = folder / TIMING_NAME, folder / HYPS_NAME
    if not (timing_path.is_file() and hyps_path.is_file()):
        return None
    timing = json.loads(timing_path.read_text())
    if inputs is not None and timing.get("inputs") != inputs:
        return None
    rows = list(read_jsonl(hyps_path))
    return Transcription(
        model=timing["model"],
        source=timing["source"],
        params=timing["params"],
        ids=tuple(r["id"] for r in rows),
        refs=tuple(r["ref"] for r in rows),
        hyps=tuple(r["hyp"] for r in rows),
        durations=tuple(r["duration"] for r in rows),
        speakers=tuple(r.get("speaker") for r in rows),
        audio_s=timing["audio_s"],
        wall_s=timing["wall_s"],
        skipped=timing.get("skipped", 0),
    )


def write_alignment(scores: Sequence[UtteranceScore], folder: Path) -> None:
    """Write ``alignment.jsonl`` (one utterance per line, chunks as op/ref/hyp) and ``alignment.txt``.

    The text file is for reading: jiwer's REF/HYP layout, utterances with most errors first.
    """
    atomic_write_jsonl(folder / ALIGNMENT_NAME, (to_dict(s) for s in scores))
    blocks = []
    for s in sorted(scores, key=lambda s: (-s.errors, s.id)):
        blocks.append(_alignment_block(s))
    atomic_write_text(folder / ALIGNMENT_TEXT_NAME, "\n".join(blocks))


def _alignment_block(s: UtteranceScore) -> str:
    ref_row, hyp_row, ops_row = [], [], []
    for op, r, h in s.alignment:
        rw, hw = r.split(), h.split()
        for k in range(max(len(rw), len(hw))):
            a = rw[k] if k < len(rw) else "*"
            b = hw[k] if k < len(hw) else "*"
            width = max(len(a), len(b))
            ref_row.append(a.ljust(width))
            hyp_row.append(b.ljust(width))
            ops_row.append(_OP_MARK[op].ljust(width))
    head = f"=== {s.id}  S={s.substitutions} D={s.deletions} I={s.insertions} N={s.ref_words} ==="
    return "\n".join(
        [
            head,
            "REF: " + " ".join(ref_row),
            "HYP: " + " ".join(hyp_row),
            "     " + " ".join(ops_row).rstrip(),
            "",
        ]
    )


def result_dict(r: ModelResult) -> dict[str, Any]:
    """A :class:`ModelResult` as JSON-ready dict, with ``wer``/``cer`` at the top level.

    The two copies are for readers of the file; :func:`asr_distill.records.from_dict`
    ignores them when it reads the record back.
    """
    d = to_dict(r)
    d["wer"] = r.score.wer
    d["cer"] = r.score.cer
    return d


def write_result(r: ModelResult, folder: Path) -> None:
    """One model's ``result.json``."""
    atomic_write_text(folder / RESULT_NAME, json.dumps(result_dict(r), indent=2) + "\n")


def _set_dict(ev: Evaluation) -> dict[str, Any]:
    return {
        "manifest": ev.manifest,
        "normaliser": ev.normaliser,
        "models": [result_dict(r) for r in ev.results],
        "comparisons": [dict(to_dict(c), a_better=c.a_better) for c in ev.comparisons],
    }


def write_summary(suite: EvaluationSuite, out: Path) -> None:
    """``summary.json`` (every figure) and ``table.md`` (the comparison a reader wants)."""
    summary = _set_dict(suite.primary) | {
        "sets": {name: _set_dict(ev) for name, ev in suite.sets.items()},
        "regressions": [to_dict(r) for r in suite.regressions],
        "baselines": suite.baselines,
        "skipped_sets": suite.skipped,
    }
    atomic_write_text(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / TABLE_NAME, format_suite(suite))


def format_suite(suite: EvaluationSuite) -> str:
    """The markdown of ``table.md``: models by sets, regressions, then each set's own tables."""
    parts = []
    if len(suite.sets) > 1 or suite.skipped:
        parts += ["## Every model on every test set", format_sets(suite)]
    parts.append(format_regressions(suite.regressions, checked=bool(suite.baselines)))
    for name, ev in suite.sets.items():
        head = f"## {name}: `{ev.manifest}`" if len(suite.sets) > 1 else ""
        parts += [head, format_table(ev.results), format_comparisons(ev.comparisons)]
    return "\n\n".join(p for p in parts if p) + "\n"


def _evaluation(d: dict[str, Any], out: str | Path) -> Evaluation:
    fields = {"results": d["models"], "comparisons": d["comparisons"], "out_dir": str(out)}
    return from_dict(Evaluation, {"manifest": d["manifest"], "normaliser": d["normaliser"]} | fields)


def load_suite(out: str | Path) -> EvaluationSuite:
    """Read back every set of an evaluation; a single-manifest ``summary.json`` is its ``in_domain``."""
    d = json.loads((Path(out) / SUMMARY_NAME).read_text())
    sets = d.get("sets") or {IN_DOMAIN: d}
    return EvaluationSuite(
        sets={name: _evaluation(s, out) for name, s in sets.items()},
        regressions=tuple(from_dict(Regression, r) for r in d.get("regressions", [])),
        baselines=dict(d.get("baselines", {})),
        skipped=dict(d.get("skipped_sets", {})),
        out_dir=str(out),
    )


def load_evaluation(out: str | Path) -> Evaluation:
    """The in-domain evaluation written by :func:`asr_distill.evaluate.evaluate` (its ``summary.json``)."""
    return _evaluation(json.loads((Path(out) / SUMMARY_NAME).read_text()), out)


__all__ = [
    "SUMMARY_NAME",
    "TABLE_NAME",
    "decoding_inputs",
    "format_suite",
    "load_evaluation",
    "load_suite",
    "load_transcription",
    "model_folder",
    "result_dict",
    "save_transcription",
    "saved_inputs",
    "slug",
    "write_alignment",
    "write_result",
    "write_summary",
]
