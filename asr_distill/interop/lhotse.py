"""lhotse: labels out as a CutSet (with its recordings and supervisions), and a CutSet in.

Out: one ``Recording`` per audio file, one ``SupervisionSegment`` per label at its offset
within that file (segments of a long recording share the recording), and one cut per label
spanning exactly that segment, written with lhotse's own ``to_file`` as ``cuts.jsonl.gz``,
``recordings.jsonl.gz`` and ``supervisions.jsonl.gz``; ``lhotse.load_manifest`` opens each.
The supervision's ``text`` is the label; its ``custom`` holds the reference transcript,
the teacher's text, the confidence signals and the provenance (see ``common.label_row``).

In: each cut of a CutSet (or each whole recording of a RecordingSet) becomes an
``Utterance`` over the same file, offset and duration, so labeling a CutSet labels exactly
its cuts. Relative source paths resolve against the working folder, as in lhotse.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..records import Skip, Utterance
from .common import label_rows, recording_ids, require, safe_id

CUTS, RECORDINGS, SUPERVISIONS = "cuts.jsonl.gz", "recordings.jsonl.gz", "supervisions.jsonl.gz"
# Columns a supervision has fields for; every other column of a label row goes into ``custom``.
OWN_FIELDS = ("id", "audio_filepath", "offset", "duration", "text", "language", "speaker")
CUT_TYPES = ("MonoCut", "MultiCut", "MixedCut", "PaddingCut", "DataCut")
UNSUPPORTED = "unsupported_source"  # a Skip reason: audio that is not a local file range


def _recordings(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``Recording`` per audio file of ``rows`` (header read, nothing decoded), by path."""
    lhotse = require("lhotse")
    ids = recording_ids(r["audio_filepath"] for r in rows)
    return {path: lhotse.Recording.from_file(path, recording_id=rid) for path, rid in ids.items()}


def _span(row: dict[str, Any], rec) -> tuple[float, float]:
    """The label's ``(start, duration)`` in its recording; a rounded duration past the end is clipped."""
    start = row["offset"]
    end = min(start + row["duration"], rec.duration)
    if end <= start:
        raise ValueError(
            f"label {row['id']!r} starts at {start:.3f}s, past the end of {row['audio_filepath']} "
            f"({rec.duration:.3f}s)"
        )
    return start, end - start


def supervisions(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[Any]]:
    """The recordings (by path) and one supervision per row, at its absolute offset."""
    lhotse = require("lhotse")
    recs = _recordings(rows)
    sups = []
    for row in rows:
        rec = recs[row["audio_filepath"]]
        start, duration = _span(row, rec)
        channel = 0 if rec.num_channels == 1 else list(rec.channel_ids)
        custom = {k: v for k, v in row.items() if k not in OWN_FIELDS}
        sups.append(
            lhotse.SupervisionSegment(
                id=row["id"],
                recording_id=rec.id,
                start=start,
                duration=duration,
                channel=channel,
                text=row["text"],
                language=row["language"],
                speaker=row["speaker"],
                custom=custom,
            )
        )
    return recs, sups


def _cut(sup, rec):
    """The cut spanning exactly ``sup``; the supervision's start becomes 0 (cut-relative)."""
    from lhotse.cut import MonoCut, MultiCut
    from lhotse.utils import fastcopy

    inner = fastcopy(sup, start=0.0)
    if rec.num_channels == 1:
        return MonoCut(
            id=sup.id, start=sup.start, duration=sup.duration, channel=0, recording=rec, supervisions=[inner]
        )
    return MultiCut(
        id=sup.id,
        start=sup.start,
        duration=sup.duration,
        channel=list(rec.channel_ids),
        recording=rec,
        supervisions=[inner],
    )


def export_lhotse(
    labels: str | os.PathLike, out: Path, teacher_labels: str | os.PathLike | None = None
) -> int:
    """Write ``cuts``, ``recordings`` and ``supervisions`` manifests into the folder ``out``; returns cuts."""
    lhotse = require("lhotse")
    rows = label_rows(labels, teacher_labels)
    recs, sups = supervisions(rows)
    by_id = {r.id: r for r in recs.values()}
    lhotse.RecordingSet.from_recordings(sorted(recs.values(), key=lambda r: r.id)).to_file(out / RECORDINGS)
    lhotse.SupervisionSet.from_segments(sups).to_file(out / SUPERVISIONS)
    lhotse.CutSet.from_cuts(_cut(s, by_id[s.recording_id]) for s in sups).to_file(out / CUTS)
    return len(sups)


# --- in -----------------------------------------------------------------------------------


def lhotse_kind(first: dict[str, Any]) -> str | None:
    """``cuts`` or ``recordings`` when a manifest's first record is a lhotse cut or recording."""
    if first.get("type") in CUT_TYPES:
        return "cuts"
    if "sources" in first and "sampling_rate" in first:
        return "recordings"
    return None


def _manifest(path: Path):
    """The CutSet at ``path`` (a folder means its ``cuts.jsonl.gz``), lazily when it is JSON Lines."""
    lhotse = require("lhotse")
    path = path / CUTS if path.is_dir() else path
    loaded = lhotse.load_manifest_lazy(path) if ".jsonl" in path.name else None
    loaded = loaded if loaded is not None else lhotse.load_manifest(path)
    if isinstance(loaded, lhotse.RecordingSet):
        return lhotse.CutSet.from_manifests(recordings=loaded)
    if not isinstance(loaded, lhotse.CutSet):
        raise ValueError(
            f"{path} is a lhotse {type(loaded).__name__}; give a CutSet or a RecordingSet "
            "(supervisions alone do not say where the audio is)"
        )
    return loaded


def _unsupported(cut) -> str | None:
    """Why a cut cannot be labeled as a range of one local file, or None."""
    rec = getattr(cut, "recording", None)
    if type(cut).__name__ not in ("MonoCut", "MultiCut") or rec is None:
        return f"a {type(cut).__name__} without one recording (mix or pad it after labeling)"
    if len(rec.sources) != 1 or rec.sources[0].type != "file":
        return (
            f"audio from {len(rec.sources)} source(s) of type {rec.sources[0].type if rec.sources else None}"
        )
    names = [t.get("name") if isinstance(t, dict) else type(t).__name__ for t in rec.transforms or ()]
    if any(n != "Resample" for n in names):  # the labeler resamples anyway; nothing else is replayed
        return f"recording transforms {names} the labeler would not apply"
    return None


def _reference(cut) -> str | None:
    """The cut's transcript: our own export's reference, else its supervisions' texts in order."""
    sups = sorted(cut.supervisions, key=lambda s: s.start)
    if len(sups) == 1 and sups[0].custom and "ref_text" in sups[0].custom:
        return sups[0].custom["ref_text"]
    return " ".join(s.text for s in sups if s.text) or None


def _utterance(cut) -> Utterance | Skip:
    why = _unsupported(cut)
    source = (
        cut.recording.sources[0].source if getattr(cut, "recording", None) and cut.recording.sources else ""
    )
    if why is not None:
        return Skip(cut.id, str(source), UNSUPPORTED, f"cut {cut.id!r}: {why}; cannot label it")
    speakers = {s.speaker for s in cut.supervisions}
    speaker = speakers.pop() if len(speakers) == 1 else None
    return Utterance(
        cut.id, os.path.abspath(source), float(cut.duration), float(cut.start), _reference(cut), speaker
    )


def lhotse_entries(path: str | os.PathLike) -> Iterator[tuple[str, str, Any]]:
    """``(id, where, resolve)`` per cut of the manifest at ``path``, streamed (see ``hf.hf_entries``)."""
    for cut in _manifest(Path(path)):
        yield cut.id, f"{path}#{safe_id(cut.id)}", (lambda c=cut: _utterance(c))
