"""Batched decoding with Whisper's quality checks and temperature fallback.

``decode_batch`` turns a batch of (utterance, audio) pairs into ``TeacherLabel``s. It
follows ``whisper.transcribe``'s rules (compression ratio, average log-probability,
no-speech) but per batch, re-decoding only the items that failed, from encoder
features computed once per window size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from whisper.utils import compression_ratio

from ..features import SAMPLE_RATE
from ..records import Provenance, TeacherLabel, TokenScore, Utterance
from .backends import Backend, RawHypothesis
from .loops import loops
from .options import WINDOW_S, DecodePass, LabelOptions


def _looped(h: RawHypothesis, cap: int, o: LabelOptions) -> bool:
    """Ran into the token cap or repeats itself (compression ratio over the threshold, an n-gram loop)."""
    if len(h.tokens) >= cap or loops(h.text):
        return True
    return (
        o.compression_ratio_threshold is not None
        and bool(h.text)
        and compression_ratio(h.text) > o.compression_ratio_threshold
    )


def _failed(h: RawHypothesis, cap: int, o: LabelOptions) -> bool:
    """``whisper.transcribe``'s fallback test, plus a token cap that catches loops early."""
    if (
        o.no_speech_threshold is not None
        and h.no_speech_prob > o.no_speech_threshold
        and o.logprob_threshold is not None
        and h.avg_logprob < o.logprob_threshold
    ):
        return False  # silence: whisper keeps it and the filter stage decides
    if _looped(h, cap, o):
        return True
    return o.logprob_threshold is not None and h.avg_logprob < o.logprob_threshold


def _preference(h: RawHypothesis, cap: int, o: LabelOptions) -> tuple[bool, bool, float]:
    """A try that passes wins; among failed ones, one that does not loop, then the most probable.

    ``transcribe`` keeps the last (hottest) try; a sampled guess at T=1 is rarely the best
    label, so, as faster-whisper does, we keep the highest average log-probability.
    """
    return (not _failed(h, cap, o), not _looped(h, cap, o), h.avg_logprob)


def _decode_window(
    backend: Backend, audios: Sequence[np.ndarray], durations: Sequence[float], o: LabelOptions, window: float
):
    """Decode clips at one encoder window; returns (hypotheses, temperatures, failed mask, languages)."""
    feats = backend.encode(list(audios), window)
    # A forced language needs no detection before decoding; the first pass reports it.
    langs = backend.detect_language(feats) if o.language is None else None
    decode_lang = [o.language or lang for lang, _ in langs] if langs else [o.language] * len(audios)
    caps = [o.token_cap(d) for d in durations]
    best: list[RawHypothesis | None] = [None] * len(audios)
    temps = [0.0] * len(audios)
    todo = list(range(len(audios)))
    # A short window gets one try; what fails there is redone at 30 s with the full ladder.
    ladder = o.temperatures if window >= WINDOW_S else o.temperatures[:1]
    for t in ladder:
        by_lang: dict[str, list[int]] = defaultdict(list)
        for i in todo:
            by_lang[decode_lang[i]].append(i)
        still = []
        for lang, idx in by_lang.items():
            sub = feats if len(idx) == len(audios) else backend.select(feats, idx)
            step = DecodePass(
                lang,
                o.task,
                t,
                o.beam_size,
                o.best_of,
                max(caps[i] for i in idx),
                o.entropy_alpha,
                o.timestamps,
            )
            hyps = backend.generate(sub, step)
            if langs is None:  # the first pass holds every clip
                langs = (
                    [h.language for h in hyps]
                    if all(h.language for h in hyps)
                    else backend.detect_language(feats)
                )
            for i, h in zip(idx, hyps, strict=True):
                if best[i] is None or _preference(h, caps[i], o) > _preference(best[i], caps[i], o):
                    best[i], temps[i] = h, t
                if _failed(h, caps[i], o):
                    still.append(i)
        todo = sorted(still)
        if not todo:
            break
    failed = [False] * len(audios)
    for i in todo:
        failed[i] = True
    if o.word_timestamps:  # clips about to be redone at 30 s are timed there
        best = _with_words(
            backend, feats, best, decode_lang, audios, o.task, failed if window < WINDOW_S else None
        )
    return best, temps, failed, langs


def _with_words(
    backend: Backend,
    feats,
    hyps: list[RawHypothesis],
    langs: list[str],
    audios: Sequence[np.ndarray],
    task: str,
    skip: list[bool] | None,
) -> list[RawHypothesis]:
    """The chosen hypotheses with their word timings (but where ``skip``), one aligning pass per language."""
    if not hasattr(backend, "word_timings"):
        raise ValueError(f"the {backend.name} backend cannot time words: use whisper or faster-whisper")
    durations = [len(a) / SAMPLE_RATE for a in audios]  # the audio's own length, not the manifest's
    out = list(hyps)
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i in range(len(hyps)):
        if not (skip and skip[i]):
            by_lang[langs[i]].append(i)
    for lang, group in by_lang.items():
        sub = feats if len(group) == len(hyps) else backend.select(feats, group)
        timings = backend.word_timings(
            sub, [hyps[i].tokens for i in group], [durations[i] for i in group], lang, task
        )
        for i, words in zip(group, timings, strict=True):
            out[i] = replace(hyps[i], words=words)
    return out


def decode_batch(
    backend: Backend, batch: Sequence[tuple[Utterance, np.ndarray]], o: LabelOptions, provenance: Provenance
) -> list[TeacherLabel]:
    """Label a batch. Clips are grouped by encoder window; failures fall back to 30 s."""
    n = len(batch)
    hyps: list[RawHypothesis | None] = [None] * n
    temps = [0.0] * n
    windows = [WINDOW_S] * n
    langs: list[tuple[str, float | None]] = [("en", None)] * n
    groups: dict[float, list[int]] = defaultdict(list)
    for i, (u, _) in enumerate(batch):
        groups[o.window_for(u.duration)].append(i)
    retry: list[int] = []
    for window, idx in sorted(groups.items()):
        h, t, failed, lg = _decode_window(
            backend, [batch[i][1] for i in idx], [batch[i][0].duration for i in idx], o, window
        )
        for j, i in enumerate(idx):
            hyps[i], temps[i], windows[i], langs[i] = h[j], t[j], window, lg[j]
            if failed[j] and window < WINDOW_S:
                retry.append(i)
    if retry:
        h, t, _, lg = _decode_window(
            backend, [batch[i][1] for i in retry], [batch[i][0].duration for i in retry], o, WINDOW_S
        )
        for j, i in enumerate(retry):
            hyps[i], temps[i], windows[i], langs[i] = h[j], t[j], WINDOW_S, lg[j]
    return [
        _to_label(u, hyps[i], temps[i], windows[i], langs[i], backend, o, provenance)
        for i, (u, _) in enumerate(batch)
    ]


def _to_label(
    u: Utterance,
    h: RawHypothesis,
    temperature: float,
    window: float,
    lang: tuple[str, float | None],
    backend: Backend,
    o: LabelOptions,
    provenance: Provenance,
) -> TeacherLabel:
    tok = backend.tokenizer
    tokens = tuple(  # text tokens only: timestamp tokens say when, not what
        TokenScore(tok.decode([t]), lp, gibbs, tsallis, renyi)
        for t, (lp, gibbs, tsallis, renyi) in zip(h.tokens, h.token_stats, strict=False)
        if t < tok.timestamp_begin
    )
    return TeacherLabel(
        id=u.id,
        audio_filepath=u.audio_filepath,
        offset=u.offset,
        duration=u.duration,  # the utterance's
        text=h.text,
        language=o.language or lang[0],
        avg_logprob=round(h.avg_logprob, 5),
        no_speech_prob=round(h.no_speech_prob, 5),
        compression_ratio=round(compression_ratio(h.text), 4) if h.text else 0.0,
        temperature=temperature,
        tokens=tokens,
        provenance=provenance,
        language_prob=None if lang[1] is None else round(lang[1], 4),
        detected_language=lang[0],
        window_s=window,
        ref_text=u.text,
        speaker=u.speaker,
        words=h.words,
    )
