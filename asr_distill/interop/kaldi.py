"""Kaldi: labels out as a data directory (``wav.scp``, ``segments``, ``text``, ``utt2spk``, ``spk2utt``).

lhotse's ``export_to_kaldi`` writes everything but ``spk2utt`` (plus ``utt2dur``,
``reco2dur`` and ``utt2lang``); ``spk2utt`` is built here from ``utt2spk`` the way Kaldi's
``utils/utt2spk_to_spk2utt.pl`` does. Kaldi's rules hold by construction: one recording id
per audio file, a ``segments`` line per label at its offset, utterance ids prefixed by the
speaker id (an utterance without a speaker is its own speaker, ``utt2spk`` mapping it to
itself), no whitespace inside an id or a transcript line, files sorted in C-locale order.
A label set whose speaker ids would sort ``spk2utt`` apart from ``utt2spk`` is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .common import label_rows, require, safe_id
from .lhotse import supervisions


def kaldi_ids(row: dict[str, Any]) -> tuple[str, str]:
    """``(utterance id, speaker id)``: the utterance id starts with the speaker's."""
    utt = safe_id(row["id"])
    if not row["speaker"]:
        return utt, utt
    spk = safe_id(row["speaker"])
    return (utt if utt.startswith(f"{spk}-") else f"{spk}-{utt}"), spk


def _check_order(utt2spk: dict[str, str]) -> None:
    """Sorted by utterance, every speaker's utterances are together and speakers come in order."""
    seen: list[str] = []
    for utt in sorted(utt2spk):
        spk = utt2spk[utt]
        if seen and seen[-1] == spk:
            continue
        if spk in seen or (seen and spk < seen[-1]):
            raise ValueError(
                f"speaker ids {seen[-1]!r} and {spk!r} sort the utterances apart (around {utt!r}); "
                "Kaldi needs utt2spk and spk2utt in one order: rename one speaker"
            )
        seen.append(spk)


def _write_spk2utt(out: Path, utt2spk: dict[str, str]) -> None:
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    (out / "spk2utt").write_text(
        "".join(f"{spk} {' '.join(utts)}\n" for spk, utts in spk2utt.items()), encoding="utf-8"
    )


def export_kaldi(
    labels: str | os.PathLike, out: Path, teacher_labels: str | os.PathLike | None = None
) -> int:
    """Write a Kaldi data directory for the labels into the folder ``out``; returns utterances."""
    require("lhotse")
    from lhotse import RecordingSet, SupervisionSet
    from lhotse.kaldi import export_to_kaldi
    from lhotse.utils import fastcopy

    rows = label_rows(labels, teacher_labels)
    recs, sups = supervisions(rows)
    kaldi_sups, utt2spk = [], {}
    for row, sup in zip(rows, sups, strict=True):
        utt, spk = kaldi_ids(row)
        if utt in utt2spk:
            raise ValueError(f"two labels become the Kaldi utterance id {utt!r}; give them distinct ids")
        utt2spk[utt] = spk
        kaldi_sups.append(fastcopy(sup, id=utt, speaker=spk, text=" ".join(row["text"].split()), custom=None))
    _check_order(utt2spk)
    export_to_kaldi(
        RecordingSet.from_recordings(recs.values()), SupervisionSet.from_segments(kaldi_sups), out
    )
    _write_spk2utt(out, utt2spk)
    return len(kaldi_sups)
