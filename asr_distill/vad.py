"""Speech regions from Silero VAD, merged into pieces a Whisper teacher can take.

The energy rule (``audio.split_at_pauses``) cuts at the quietest stretch of a window, which
under background noise can be a quiet consonant as well as a pause. Silero's voice activity
detector tells speech from noise; this module turns its speech regions into contiguous
pieces of at most 30 s, cut in the longest pauses, and marks long stretches without speech
to be left out (``audio`` records them as ``no_speech`` skips). The model is the ONNX
sequence graph shipped inside the ``silero-vad`` wheel: no download, and loading it runs no
code from a file. Needs the ``vad`` extra: pip install 'asr_distill[vad]'.

Audio here is ``(samples,)`` float32 at 16 kHz, what ``audio`` decodes to.
"""

from __future__ import annotations

import importlib.util
import math
import threading
import warnings
from collections.abc import Sequence
from functools import cache

import numpy as np

SAMPLE_RATE = 16000  # Silero's native rate, and the one ``audio`` decodes everything to
THRESHOLD = 0.5  # speech probability above which a 32 ms frame is speech (Silero's default)
MIN_SILENCE_MS = 100  # a pause shorter than this stays inside a speech region (Silero's default)
SPEECH_PAD_MS = 30  # Silero widens each region by this, so word edges are not clipped
NO_SPEECH_S = 3.0  # a pause this long is always cut at, and its middle is left out
# Audio kept on each side of speech where a stretch is left out. With pause cuts every piece keeps
# this much beside its speech and the rest of the pause is left out, as faster-whisper's VAD pads
# speech by 0.4 s and drops the rest: up to a second of leading noise changed how Whisper wrote a
# word ("r u b 0 u t" for "rubout"). Chosen between 0.3 and 0.5 s on long recordings built from AN4
# train (benchmarks/NOTES.md, long_form); 0.5 s also keeps onsets Silero marks late (plosives).
EDGE_PAD_S = 0.5
CLEAR_PAUSE_S = 0.5  # a pause this long is between phrases; shorter ones can be between words
# The labeler cuts at every clear pause by default: on recordings of unrelated utterances, packing
# them into 30 s windows made Whisper drop whole utterances (benchmarks/results/long_form.json).
CUT_PAUSE_S = CLEAR_PAUSE_S
MIN_LEFT_OUT_S = 0.2  # with pause cuts, a stretch beyond the pad shorter than this stays in the piece
REGION_SLACK_S = 2.0  # Silero splits speech longer than max_s minus this, so a region fits a window
MIN_PIECE_S = 1.0  # a cut never leaves a piece shorter than this
EXTRA_HINT = "the silero segmenter needs the vad extra: pip install 'asr_distill[vad]'"

# How Silero's own state machine turns frame probabilities into regions.
_SILERO_SETTINGS = {
    "sampling_rate": SAMPLE_RATE,
    "threshold": THRESHOLD,
    "min_silence_duration_ms": MIN_SILENCE_MS,
    "speech_pad_ms": SPEECH_PAD_MS,
}

Piece = tuple[float, float, bool]  # (start_s, end_s, holds speech)

_LOCK = threading.Lock()


def _import_silero():
    """``silero_vad``, leaving torch's thread count as it was (its import sets it to 1)."""
    import torch

    threads = torch.get_num_threads()
    try:
        import silero_vad
    except ImportError as e:
        raise ImportError(f"{EXTRA_HINT} ({e})") from e
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return silero_vad


@cache
def _model():
    silero_vad = _import_silero()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # its importlib.resources call
            return silero_vad.load_silero_vad(sequence=True)
    except TypeError as e:  # before 6.2.2 there was no sequence graph
        raise ImportError(f"{EXTRA_HINT}; silero-vad>=6.2.2 is needed ({e})") from e
    except ImportError as e:  # its ONNX graphs run on onnxruntime, an extra of silero-vad
        raise ImportError(f"{EXTRA_HINT}; it runs on onnxruntime ({e})") from e


def silero_available() -> bool:
    """Whether ``silero-vad`` is installed (without importing it, which loads torch)."""
    return importlib.util.find_spec("silero_vad") is not None


def load_vad():
    """Silero's ONNX sequence model, loaded once per process; safe to call from any thread.

    Raises:
        ImportError: ``silero-vad`` (6.2.2 or later) or onnxruntime is missing; the message
            names the extra to install.
    """
    with _LOCK:
        return _model()


def speech_regions(samples: np.ndarray, max_speech_s: float = float("inf")) -> list[tuple[float, float]]:
    """``(start_s, end_s)`` of each stretch of speech Silero finds in ``(samples,)`` 16 kHz audio.

    Regions are padded by ``SPEECH_PAD_MS`` and at most ``max_speech_s`` long: Silero splits
    longer speech at its longest inner silence, or hard where there is none.
    """
    model = load_vad()  # imports silero_vad once, in whichever thread comes first
    from silero_vad import get_speech_timestamps_from_probs

    samples = np.ascontiguousarray(samples, dtype=np.float32)
    probs = model.audio_forward(samples, sampling_rate=SAMPLE_RATE)
    found = get_speech_timestamps_from_probs(
        list(probs), max_speech_duration_s=max_speech_s, audio_length_samples=len(samples), **_SILERO_SETTINGS
    )
    return [(r["start"] / SAMPLE_RATE, r["end"] / SAMPLE_RATE) for r in found]


def split_at_speech(
    samples: np.ndarray, max_s: float = 30.0, cut_pause_s: float | None = None, pad_s: float = EDGE_PAD_S
) -> list[Piece]:
    """Cut 16 kHz audio into contiguous ``(start_s, end_s, speech)`` pieces by Silero VAD.

    Speech pieces are at most ``max_s`` long and end at every pause of ``cut_pause_s`` or
    more (None: ``CUT_PAUSE_S``; ``math.inf``: packed up to ``max_s``), keeping ``pad_s``
    beside their speech where a pause is left out; see ``plan_pieces``.

    Raises:
        ImportError: the ``vad`` extra is not installed.
    """
    regions = speech_regions(samples, max_speech_s=max(max_s - REGION_SLACK_S, MIN_PIECE_S))
    cut = CUT_PAUSE_S if cut_pause_s is None else cut_pause_s
    return plan_pieces(regions, len(samples) / SAMPLE_RATE, max_s, pad_s=pad_s, cut_pause_s=cut)


def plan_pieces(
    regions: Sequence[tuple[float, float]],
    total_s: float,
    max_s: float = 30.0,
    no_speech_s: float = NO_SPEECH_S,
    pad_s: float = EDGE_PAD_S,
    cut_pause_s: float | None = None,
) -> list[Piece]:
    """Contiguous pieces covering ``[0, total_s]``: speech pieces of at most ``max_s``, and the rest.

    Regions closer than ``no_speech_s`` form a run; a run is cut into speech pieces in the
    middle of pauses between regions (so each side keeps half of the pause), preferring
    long pauses and few pieces (see ``_next_cut``). With a finite ``cut_pause_s``, each phrase
    keeps ``pad_s`` of the pause beside its speech and the rest is a piece without speech
    (where at least ``MIN_LEFT_OUT_S``). Between runs, and before or after speech, a stretch
    of ``no_speech_s`` or more is a piece without speech, less ``pad_s`` kept beside the
    speech on each side; without pause cuts, shorter stretches at the edges go with the speech
    next to them.

    Args:
        regions: sorted, non-overlapping ``(start_s, end_s)`` speech regions.
        total_s: length of the audio, in seconds.
        max_s: longest speech piece.
        no_speech_s: shortest pause that is left out.
        pad_s: audio kept next to speech where a pause is left out; under ``no_speech_s / 2``.
        cut_pause_s: a pause at least this long always ends a piece (unless that would leave
            one under ``MIN_PIECE_S``), so unrelated utterances are not decoded in one window;
            None packs regions up to ``max_s`` whatever the pauses.

    Raises:
        ValueError: ``pad_s`` too large for ``no_speech_s``, or ``max_s`` under 3 x ``MIN_PIECE_S``.
    """
    if not (0 <= 2 * pad_s < no_speech_s and max_s >= 3 * MIN_PIECE_S):
        raise ValueError(f"plan_pieces needs 2 * pad_s < no_speech_s and max_s >= {3 * MIN_PIECE_S}")
    if not regions:
        return [(0.0, total_s, False)] if total_s > 0 else []
    runs = _runs(regions, no_speech_s)
    pause_cuts = cut_pause_s is not None and math.isfinite(cut_pause_s)
    first, last = runs[0][0][0], runs[-1][-1][1]
    pieces: list[Piece] = []
    edge = 0.0 if first < no_speech_s else first - pad_s
    for i, run in enumerate(runs):
        if i + 1 < len(runs):
            end = run[-1][1] + pad_s
        else:
            end = total_s if total_s - last < no_speech_s else last + pad_s
        pieces.append((pieces[-1][1] if pieces else 0.0, edge, False))
        for lo, hi, phrase in _phrases(run, edge, end, cut_pause_s):
            start, stop = _trim(phrase, lo, hi, pad_s) if pause_cuts else (lo, hi)
            pieces += [(lo, start, False), *((a, b, True) for a, b in _pack(phrase, start, stop, max_s))]
            pieces.append((stop, hi, False))
        edge = runs[i + 1][0][0] - pad_s if i + 1 < len(runs) else end
    pieces.append((edge, total_s, False))
    merged: list[Piece] = []
    for piece in (p for p in pieces if p[1] - p[0] > 1e-9):
        if merged and not (merged[-1][2] or piece[2]):  # stretches left out side by side: one
            piece = (merged.pop()[0], piece[1], False)
        merged.append(piece)
    return merged


def _runs(regions: Sequence[tuple[float, float]], no_speech_s: float) -> list[list[tuple[float, float]]]:
    """Regions grouped where the pause between two is shorter than ``no_speech_s``."""
    runs = [[regions[0]]]
    for region in regions[1:]:
        if region[0] - runs[-1][-1][1] >= no_speech_s:
            runs.append([region])
        else:
            runs[-1].append(region)
    return runs


def _phrases(
    run: list[tuple[float, float]], start: float, end: float, cut_pause_s: float | None
) -> list[tuple[float, float, list[tuple[float, float]]]]:
    """``[start, end]`` cut in the middle of every pause of ``cut_pause_s`` or more, with its regions."""
    cuts = [start]
    if cut_pause_s is not None:
        for a, b in zip(run[:-1], run[1:], strict=True):
            cut = (a[1] + b[0]) / 2
            if b[0] - a[1] >= cut_pause_s and cut - cuts[-1] >= MIN_PIECE_S and end - cut >= MIN_PIECE_S:
                cuts.append(cut)
    cuts.append(end)
    return [(lo, hi, [r for r in run if lo <= r[0] < hi]) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]


def _trim(run: list[tuple[float, float]], start: float, end: float, pad_s: float) -> tuple[float, float]:
    """``[start, end]`` narrowed to ``run``'s speech and ``pad_s`` either side.

    An edge moves only where that leaves out at least ``MIN_LEFT_OUT_S``.
    """
    lo, hi = run[0][0] - pad_s, run[-1][1] + pad_s
    return (lo if lo - start >= MIN_LEFT_OUT_S else start, hi if end - hi >= MIN_LEFT_OUT_S else end)


def _pack(
    run: list[tuple[float, float]], start: float, end: float, max_s: float
) -> list[tuple[float, float]]:
    """``[start, end]`` cut into pieces of at most ``max_s`` at the pauses between ``run``'s regions."""
    pauses = [(a[1], b[0]) for a, b in zip(run[:-1], run[1:], strict=True)]
    cuts = [start]
    while end - cuts[-1] > max_s:
        cuts.append(_next_cut(pauses, cuts[-1], end, max_s))
    cuts.append(end)
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def _next_cut(pauses: list[tuple[float, float]], at: float, end: float, max_s: float) -> float:
    """Where the piece starting ``at`` ends: the middle of a pause, chosen in this order.

    A clear pause (``CLEAR_PAUSE_S``: between sentences, not between words) before a
    short one; then a cut that leaves the rest coverable in the fewest windows (each costs
    the teacher a forward pass); then one in the second half of the window (no short
    pieces); then the longest pause. A pause that runs past the window is cut at the
    window's end and counts for the part of it on the nearer side of that cut. With no
    pause at all, ``at + max_s`` (Silero's region limit makes that rare: only a region
    next to the edge of a run can cross it).
    """
    limit = at + max_s
    need = _windows(end - at, max_s)
    options = []
    for a, b in pauses:
        cut = min((a + b) / 2, limit)
        if a < limit and at + MIN_PIECE_S <= cut <= end - MIN_PIECE_S:
            margin = min(cut - a, b - cut)  # pause left on either side of the cut
            thrifty = _windows(end - cut, max_s) < need
            options.append((2 * margin >= CLEAR_PAUSE_S, thrifty, cut >= at + max_s / 2, margin, cut))
    return max(options)[-1] if options else limit


def _windows(span_s: float, max_s: float) -> int:
    return math.ceil(span_s / max_s - 1e-9)


__all__ = [
    "CUT_PAUSE_S",
    "NO_SPEECH_S",
    "EDGE_PAD_S",
    "load_vad",
    "silero_available",
    "plan_pieces",
    "speech_regions",
    "split_at_speech",
]
