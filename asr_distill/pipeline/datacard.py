"""The data card: what a student learned from, written beside every run.

Sources and their licences, the teacher and its licence and weights, label counts and
hours, inputs skipped and labels dropped per reason, and label WER where the pool had
references. It reads only the config and files the stages left.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..jsonl import atomic_write_text, read_jsonl
from .layout import Paths

# Licences of the models this toolkit ships or names, for the data card.
KNOWN_LICENCES: dict[str, str] = {
    "base": "MIT (OpenAI Whisper)",
    "tiny.en": "MIT (OpenAI Whisper)",
    "tiny": "MIT (OpenAI Whisper)",
    "small": "MIT (OpenAI Whisper)",
    "medium": "MIT (OpenAI Whisper)",
    "large-v3": "MIT (OpenAI Whisper)",
}


def _licence(model: str) -> str:
    if model in KNOWN_LICENCES:
        return KNOWN_LICENCES[model]
    return "unknown: check the model's own terms"


def _skip_counts(labels: Path) -> dict[str, int]:
    from ..label import skips_path

    skips = skips_path(labels)
    counts: dict[str, int] = {}
    if skips.is_file():
        for d in read_jsonl(skips):
            counts[d["reason"]] = counts.get(d["reason"], 0) + 1
    return counts


def data_card(p: Paths) -> dict[str, Any]:
    """What the student learned from: sources, teacher, licences, label hours, drops, label WER."""
    card: dict[str, Any] = {
        "name": p.cfg.name,
        "sources": [dataclasses.asdict(s) for s in p.cfg.data.sources],
        "unlabeled_pool": p.cfg.data.train,
        "test_set": p.cfg.data.test,
        "teacher": {"model": p.cfg.label.teacher, "licence": _licence(p.cfg.label.teacher)},
        "second_model": (
            {"model": p.cfg.label.second, "licence": _licence(p.cfg.label.second)}
            if p.cfg.label.second
            else None
        ),
    }
    if p.labels.is_file():
        rows = [d for d in read_jsonl(p.labels)]
        prov = rows[0].get("provenance", {}) if rows else {}
        card["teacher"] |= {
            "weights_sha256": prov.get("weights_sha256"),
            "decoding": prov.get("decoding"),
            "toolkit_version": prov.get("toolkit_version"),
        }
        card["labels"] = {
            "utterances": len(rows),
            "hours": round(sum(d["duration"] for d in rows) / 3600, 4),
            "skipped_inputs": _skip_counts(p.labels),
        }
    report_path = p.filter_dir / "filter_report.json"
    if report_path.is_file():
        r = json.loads(report_path.read_text())
        card["filter"] = {
            k: r.get(k)
            for k in (
                "utterances",
                "kept",
                "dropped",
                "retention",
                "hours",
                "kept_hours",
                "by_reason",
                "score",
                "threshold",
                "threshold_source",
                "normaliser",
                "wer_normaliser",
                "corrections",
                "label_wer_all",
                "label_wer_kept",
                "references",
                "review_load_min_per_h",
            )
        }
    reviewed = p.review_dir / "review_audit.jsonl"
    if reviewed.is_file():
        card["review"] = {"decisions": sum(1 for _ in read_jsonl(reviewed))}
    card["training_manifest"] = str(p.training_manifest)
    return card


def format_data_card(card: dict[str, Any]) -> str:
    """The data card as markdown."""
    lines = [f"# Data card: {card['name']}", "", "## Sources", ""]
    for s in card["sources"] or [{"name": card["unlabeled_pool"], "licence": None, "url": None}]:
        lines.append(
            f"- {s['name']}: licence {s.get('licence') or 'unknown'}"
            + (f" ({s['url']})" if s.get("url") else "")
            + (f". {s['notes']}" if s.get("notes") else "")
        )
    t = card["teacher"]
    lines += [
        "",
        "## Labels",
        "",
        f"- teacher: `{t['model']}`, licence {t['licence']}"
        + (f", weights sha256 {t['weights_sha256'][:16]}..." if t.get("weights_sha256") else ""),
    ]
    if card.get("second_model"):
        lines.append(
            f"- second model (agreement score): `{card['second_model']['model']}`, "
            f"licence {card['second_model']['licence']}"
        )
    if "labels" in card:
        lab = card["labels"]
        lines.append(f"- labeled: {lab['utterances']} utterances, {lab['hours']:.3f} h")
        if lab["skipped_inputs"]:
            skipped = ", ".join(f"{k} {v}" for k, v in lab["skipped_inputs"].items())
            lines.append(f"- inputs skipped: {skipped}")
    f = card.get("filter")
    if f:
        lines += [
            "",
            "## Filter",
            "",
            f"- kept {f['kept']} of {f['utterances']} ({f['retention']:.1%}), {f['kept_hours']:.3f} of "
            f"{f['hours']:.3f} h; score `{f['score']}` threshold {f['threshold']} "
            f"({f['threshold_source']})",
            f"- correction normaliser `{f['normaliser']}`; corrections: "
            + (", ".join(f"{k} {v}" for k, v in (f["corrections"] or {}).items()) or "none"),
        ]
        if f["by_reason"]:
            lines += ["", "| dropped for | utterances | hours |", "|---|---|---|"]
            lines += [f"| {k} | {v['utterances']} | {v['hours']:.4f} |" for k, v in f["by_reason"].items()]
        if f.get("label_wer_all") is not None:
            kept = f["label_wer_kept"]
            lines += [
                "",
                f"Label WER against the pool's own transcripts ({f['wer_normaliser']}, "
                f"used only to measure): all {f['label_wer_all']:.2f}%, kept "
                + ("-" if kept is None else f"{kept:.2f}%")
                + f" ({f['references']} references).",
            ]
    if "review" in card:
        lines.append(f"- human review: {card['review']['decisions']} decisions applied")
    lines += ["", f"Training manifest: `{card['training_manifest']}`", ""]
    return "\n".join(lines)


def write_data_card(p: Paths) -> Path:
    """``data_card.json`` and ``data_card.md`` in the run root."""
    card = data_card(p)
    atomic_write_text(p.root / "data_card.json", json.dumps(card, indent=1) + "\n")
    atomic_write_text(p.root / "data_card.md", format_data_card(card))
    return p.root / "data_card.md"
