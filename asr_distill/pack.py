"""Short utterances labeled together in one window, and the label split back per utterance.

Whisper hears a short clip of accented or children's speech badly on its own: it invents
sentences or spells letters ("u t e t 0 l u c a b" for "none of them had thought to look
behind the door"). Inside a 30 s window of the same speaker's other sentences it does much
better: on speechocean762 test, base's WER fell from 44-46% per utterance to 32-40% in packed
windows (benchmarks/NOTES.md, long_form_speechocean_clean). This module plans the windows
(consecutive utterances of one speaker, joined by short silences), and turns the teacher's
label of a window, with its word timings, back into one label per utterance.

Audio here is ``(samples,)`` float32 at 16 kHz, what ``audio`` decodes to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from difflib import SequenceMatcher

import numpy as np
from whisper.utils import compression_ratio

from .audio import SAMPLE_RATE
from .records import TeacherLabel, TokenScore, Utterance, WordTiming

GAP_S = 1.0  # silence between two utterances in a window: a clear pause, so words do not run on
PACK_S = 30.0  # Whisper's window


@dataclass(frozen=True)
class Pack:
    """Utterances decoded together: each one's ``(start_s, end_s)`` in the joined audio."""

    id: str
    members: tuple[Utterance, ...]
    spans: tuple[tuple[float, float], ...]

    @property
    def duration(self) -> float:
        """Length of the joined audio, in seconds."""
        return self.spans[-1][1]


def plan_packs(utts: Sequence[Utterance], max_s: float = PACK_S, gap_s: float = GAP_S) -> list[Pack]:
    """Consecutive utterances of one speaker grouped into windows of at most ``max_s``.

    Manifest order is kept, so a speaker's utterances stay together where the manifest keeps
    them together; a change of ``speaker`` (None counts as a speaker) starts a new window.
    An utterance longer than ``max_s`` is a pack of its own (the labeler segments it).

    Raises:
        ValueError: ``gap_s`` negative or ``max_s`` not positive.
    """
    if gap_s < 0 or max_s <= 0:
        raise ValueError(f"plan_packs needs gap_s >= 0 and max_s > 0, got {gap_s} and {max_s}")
    groups: list[list[Utterance]] = []
    for u in utts:
        last = groups[-1] if groups else None
        fits = last and sum(x.duration for x in last) + len(last) * gap_s + u.duration <= max_s
        if last and fits and last[0].speaker == u.speaker:
            last.append(u)
        else:
            groups.append([u])
    return [pack_of(f"pack:{group[0].id}", group, gap_s) for group in groups]


def pack_of(
    pack_id: str, members: Sequence[Utterance], gap_s: float = GAP_S, lengths: Sequence[float] | None = None
) -> Pack:
    """``members`` placed one after another with ``gap_s`` between them, as ``join_audio`` joins them.

    ``lengths`` are the clips' real lengths in seconds when known (decoded audio can differ from
    a manifest's ``duration`` by a few samples, or more when the manifest is wrong); default the
    members' durations.
    """
    spans, at = [], 0.0
    for length in lengths if lengths is not None else [u.duration for u in members]:
        spans.append((round(at, 3), round(at + length, 3)))
        at += length + gap_s
    if len(spans) != len(members):
        raise ValueError(f"{pack_id}: {len(members)} members but {len(spans)} lengths")
    return Pack(id=pack_id, members=tuple(members), spans=tuple(spans))


def join_audio(clips: Sequence[np.ndarray], gap_s: float = GAP_S) -> np.ndarray:
    """The clips in order with ``gap_s`` of silence between each two, as ``plan_packs`` places them."""
    gap = np.zeros(round(gap_s * SAMPLE_RATE), np.float32)
    parts: list[np.ndarray] = []
    for i, clip in enumerate(clips):
        parts += [gap] if i else []
        parts.append(np.asarray(clip, np.float32))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def split_label(label: TeacherLabel, pack: Pack) -> list[TeacherLabel]:
    """One label per member of ``pack`` from the window's label and its word timings.

    A word goes to the utterance whose span holds its midpoint, or else the nearest one; each
    utterance keeps the tokens of its words, so token-level confidence still applies to it,
    and its ``avg_logprob`` is their mean. ``no_speech_prob`` and ``temperature`` are the
    window's. Word times become times in the utterance's own clip, kept inside it.

    Raises:
        ValueError: the label has text but no word timings (label with word timestamps).
    """
    if label.text.strip() and not label.words:
        raise ValueError(f"{label.id}: splitting a packed window needs word timings (--word-timestamps)")
    owners = [_owner((w.start + w.end) / 2, pack.spans) for w in label.words]
    tokens_of = _tokens_by_word(label.tokens, label.words)
    out = []
    for k, (u, (start, _)) in enumerate(zip(pack.members, pack.spans, strict=True)):
        mine = [i for i, o in enumerate(owners) if o == k]
        words = tuple(_retimed(label.words[i], start, u.duration) for i in mine)
        tokens = tuple(t for i in mine for t in tokens_of[i])
        text = "".join(w.word for w in words).strip()
        out.append(
            replace(
                label,
                id=u.id,
                audio_filepath=u.audio_filepath,
                offset=u.offset,
                duration=u.duration,
                text=text,
                avg_logprob=round(float(np.mean([t.logprob for t in tokens])), 5) if tokens else 0.0,
                compression_ratio=round(compression_ratio(text), 4) if text else 0.0,
                tokens=tokens,
                words=words,
                ref_text=u.text,
                speaker=u.speaker,
            )
        )
    return out


def _retimed(w: WordTiming, start: float, duration: float) -> WordTiming:
    """``w`` in the clip's own time, kept inside the clip (the alignment may start a word in the gap)."""
    begin = min(max(w.start - start, 0.0), duration)
    return replace(w, start=round(begin, 3), end=round(min(max(w.end - start, begin), duration), 3))


def _owner(t: float, spans: Sequence[tuple[float, float]]) -> int:
    """The span holding time ``t``, else the nearest one."""
    return min(range(len(spans)), key=lambda k: max(spans[k][0] - t, t - spans[k][1], 0.0))


def _tokens_by_word(tokens: Sequence[TokenScore], words: Sequence[WordTiming]) -> list[list[TokenScore]]:
    """Each word's tokens: the word that holds the token's first character.

    The words are the tokens' text cut in pieces (whisper splits and merges them so), so the
    two texts match; where a token alone decodes differently (part of a multi-byte character
    decodes to a replacement mark), the texts are aligned and a differing stretch maps onto
    the words' stretch it replaces.
    """
    out: list[list[TokenScore]] = [[] for _ in words]
    if not words:
        return out
    said, heard = "".join(t.text for t in tokens), "".join(w.word for w in words)
    where = list(range(len(said)))  # position in ``heard`` of each character of ``said``
    if said != heard:
        for op, i1, i2, j1, j2 in SequenceMatcher(None, said, heard, autojunk=False).get_opcodes():
            for i in range(i1, i2):
                where[i] = j1 + (i - i1) if op == "equal" else max(min(j1 + (i - i1), j2 - 1), 0)
    ends = np.cumsum([len(w.word) for w in words])
    at = 0
    for t in tokens:
        first = where[min(at, len(where) - 1)] if where else 0
        out[min(int(np.searchsorted(ends, first, side="right")), len(words) - 1)].append(t)
        at += len(t.text)
    return out
