"""Audio loading and splitting: every input becomes 16 kHz mono float32, or a reasoned skip.

Whisper-style teachers take at most 30 s at 16 kHz, so this module owns the three things
between a manifest line and a model: decode (any rate, any channel count, wav/flac/ogg/mp3
through ``soundfile``; other containers through ``librosa``/ffmpeg), refuse what cannot be
labeled with a stable reason code (see ``SKIP_REASONS``), and cut long recordings at pauses
so that no word is split between two windows (by energy, or by Silero VAD with the ``vad``
extra: ``vad.py``). Long files are read in ``LONG_CHUNK_S`` chunks, so memory stays flat
whatever the recording's length.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from .records import Skip, Utterance

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # what Whisper-family teachers and our students consume
MAX_SEGMENT_S = 30.0  # Whisper's window: longer audio is split before labeling
MIN_SEGMENT_S = 1.0  # a cut never leaves a piece shorter than this
MIN_DURATION_S = 0.1  # below this there is no word to transcribe
MIN_SAMPLES = round(MIN_DURATION_S * SAMPLE_RATE)

FRAME_S = 0.025  # analysis frame for energy (a classic ASR frame)
HOP_S = 0.010
FRAME_LENGTH = round(FRAME_S * SAMPLE_RATE)  # 400 samples
HOP_LENGTH = round(HOP_S * SAMPLE_RATE)  # 160 samples
QUIET_REGION_S = 0.1  # a cut point must be quiet for this long, not one quiet frame in a word
QUIET_REGION_FRAMES = max(1, round(QUIET_REGION_S / HOP_S))
CUT_SEARCH_FRACTION = 1 / 3  # cut in the last third of the window: long pieces, still a choice
QUIET_TIE = 1e-12  # energies this close to the minimum count as equally quiet (digital silence)

SILENCE_PEAK = 1e-4  # peak amplitude (full scale 1.0) below which a file is digital silence
SILENCE_RMS_DBFS = -60.0  # ...or its loudest frame is quieter than this
SILENCE_RMS = 10 ** (SILENCE_RMS_DBFS / 20)
# Float audio is full scale at 1.0; real exports overshoot a little (mixing headroom), never
# by 18 dB. Beyond this the numbers are not audio at this scale (int16 values stored as
# float, a broken gain): the features would be junk or overflow to inf/NaN in the model.
MAX_PEAK = 8.0
INT16_FULL_SCALE = 32768.0
WAV_HEADER_SCAN_BYTES = 1 << 16  # a WAV's chunks before ``data`` (fmt, LIST...) fit in this

RANGE_TOLERANCE_S = 0.25  # manifests round durations; a request this far past the end is clipped
LONG_CHUNK_S = 300.0  # long files are read and split this much at a time

RESAMPLE_TYPE = "soxr_hq"
# Containers libsndfile cannot read; tried with librosa/audioread (which needs ffmpeg).
FALLBACK_EXTENSIONS = (".mp3", ".m4a", ".mp4", ".aac", ".wma", ".opus", ".webm")
# An AudioError with one of these reasons while reading one chunk of a long file skips
# that chunk only; any other reason means the rest of the file cannot be read either.
CHUNK_LOCAL_REASONS = frozenset({"non_finite", "out_of_range"})

SKIP_REASONS = (
    "missing",
    "not_a_file",
    "empty_file",
    "unreadable",
    "zero_length",
    "non_finite",
    "out_of_range",
    "silent",
    "too_short",
    "bad_range",
    "no_speech",
)
NO_SPEECH = "no_speech"  # a long stretch the silero segmenter found no speech in: left out
SEGMENTERS = ("energy", "silero")  # how audio over MAX_SEGMENT_S is cut (see ``iter_segments``)
SEGMENT_S_RANGE = (3 * MIN_SEGMENT_S, MAX_SEGMENT_S)  # the longest segment a user may ask for


class AudioError(Exception):
    """Audio that cannot be used, with a stable ``reason`` code and a ``message`` for people.

    Attributes:
        reason: One of ``SKIP_REASONS``; tools count and filter on it.
        message: Names the file (and range) and says what to do.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def _where(path: str | os.PathLike, offset: float = 0.0, duration: float | None = None) -> str:
    if not offset and duration is None:
        return str(path)
    end = "end" if duration is None else f"{offset + duration:.2f}s"
    return f"{path} [{offset:.2f}s-{end}]"


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise AudioError(
            "missing",
            f"{p} does not exist; fix audio_filepath (relative paths resolve against the manifest's folder)",
        )
    if not p.is_file():
        raise AudioError("not_a_file", f"{p} is a directory or special file, not audio; point at a file")
    if p.stat().st_size == 0:
        raise AudioError("empty_file", f"{p} is 0 bytes (an interrupted copy?); copy it again or drop it")
    return p


def _check_range_args(path: Path, offset: float, duration: float | None) -> None:
    if not math.isfinite(offset) or offset < 0:
        raise AudioError("bad_range", f"{path}: offset {offset} must be a finite number >= 0 seconds")
    if duration is not None and (not math.isfinite(duration) or duration < 0):
        raise AudioError("bad_range", f"{path}: duration {duration} must be a finite number >= 0 seconds")


def _unreadable(path: Path, err: BaseException) -> AudioError:
    hint = "check that it is a complete audio file, or re-encode it (ffmpeg -i IN -ar 16000 OUT.flac)"
    if path.suffix.lower() in FALLBACK_EXTENSIONS:
        hint = f"install ffmpeg so {path.suffix} can be decoded, or convert it to flac/wav"
    return AudioError("unreadable", f"{path} cannot be decoded ({type(err).__name__}: {err}); {hint}")


def _frame_range(
    path: Path, frames: int, rate: int, offset: float, duration: float | None
) -> tuple[int, int]:
    """Start frame and frame count for ``[offset, offset + duration)`` of a ``frames``-long file."""
    if frames <= 0:
        raise AudioError("zero_length", f"{path} holds no audio frames; export it again or drop it")
    start = round(offset * rate)
    if start >= frames:
        raise AudioError(
            "bad_range",
            f"{path}: offset {offset:.3f}s is at or past the end ({frames / rate:.3f}s); fix the manifest",
        )
    available = frames - start
    if duration is None:
        return start, available
    count = round(duration * rate)
    if count - available > RANGE_TOLERANCE_S * rate:
        raise AudioError(
            "bad_range",
            f"{path}: asks for {duration:.3f}s from {offset:.3f}s but only {available / rate:.3f}s remain; "
            "fix the manifest's duration/offset",
        )
    return start, min(count, available)


def _empty_data_chunk(path: Path) -> dict[int, bytes] | None:
    """Header fixes for a WAV whose ``data`` size field is 0 although bytes follow it, else None.

    Recorders that stream a WAV write the sizes last; killed first, they leave 0 there.
    The fix sets the data size (and the RIFF size) to what the file really holds, as
    sox and ffmpeg assume; libsndfile reads 0xFFFFFFFF that way already, but not 0.
    """
    with open(path, "rb") as f:
        head = f.read(WAV_HEADER_SCAN_BYTES)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        size = int.from_bytes(head[pos + 4 : pos + 8], "little")
        if head[pos : pos + 4] == b"data":
            total = path.stat().st_size
            if size != 0 or total <= pos + 8:
                return None
            return {4: (total - 8).to_bytes(4, "little"), pos + 4: (total - pos - 8).to_bytes(4, "little")}
        pos += 8 + size + (size & 1)
    return None


class _PatchedFile(io.RawIOBase):
    """A file read through a few replaced byte ranges (a repaired header), for libsndfile."""

    def __init__(self, path: Path, patches: dict[int, bytes]):
        super().__init__()
        self._file = open(path, "rb")
        self._patches = patches

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer) -> int:
        start = self._file.tell()
        n = self._file.readinto(buffer)
        for at, data in self._patches.items():
            lo, hi = max(at, start), min(at + len(data), start + n)
            if lo < hi:
                buffer[lo - start : hi - start] = data[lo - at : hi - at]
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


@contextlib.contextmanager
def _soundfile(path: Path) -> Iterator[sf.SoundFile]:
    """``sf.SoundFile(path)``, reading a WAV whose header claims no data as what it holds."""
    with sf.SoundFile(path) as f:
        patches = _empty_data_chunk(path) if f.frames <= 0 else None
        if patches is None:
            yield f
            return
    with _PatchedFile(path, patches) as raw, sf.SoundFile(raw) as f:
        logger.warning(
            "%s: the WAV header says its data chunk is empty, but %d frames follow it; "
            "reading them (a recording stopped before its header was finished?)",
            path,
            f.frames,
        )
        yield f


def _read_soundfile(path: Path, offset: float, duration: float | None) -> tuple[np.ndarray, int] | None:
    """``(frames, channels)`` float32 and rate, or None when libsndfile does not know the format.

    Seeks to ``offset`` and reads only the frames asked for, so a slice of a long file is cheap.
    """
    with contextlib.ExitStack() as stack:
        try:
            f = stack.enter_context(_soundfile(path))
        except Exception as e:  # libsndfile reports every open failure the same way
            if path.suffix.lower() in FALLBACK_EXTENSIONS:
                return None
            raise _unreadable(path, e) from e
        start, count = _frame_range(path, f.frames, f.samplerate, offset, duration)
        try:
            if start:
                f.seek(start)
            data = f.read(count, dtype="float32", always_2d=True)
        except Exception as e:  # truncated/corrupt streams: decoders raise many types
            raise _unreadable(path, e) from e
        if count and len(data) == 0:
            raise _unreadable(path, EOFError("header promises frames, none could be read"))
        if len(data) < count:
            logger.warning("%s: read %d of %d frames (truncated file?)", path, len(data), count)
        return data, f.samplerate


def _read_fallback(path: Path, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    """Decode with librosa (audioread/ffmpeg) for containers libsndfile cannot open."""
    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns on every soundfile -> audioread fallback
            y, rate = librosa.load(
                path, sr=None, mono=False, offset=offset, duration=duration, dtype=np.float32
            )
    except Exception as e:  # audioread raises backend-specific types
        raise _unreadable(path, e) from e
    data = np.atleast_2d(y).T  # (channels, n) -> (n, channels)
    if data.size == 0:
        if offset > 0:
            raise AudioError("bad_range", f"{path}: nothing to read from {offset:.3f}s; fix the manifest")
        raise AudioError("zero_length", f"{path} holds no audio frames; export it again or drop it")
    return data, int(rate)


def _to_mono_16k(data: np.ndarray, rate: int, where: str) -> np.ndarray:
    """``(frames, channels)`` at ``rate`` -> ``(samples,)`` float32 at ``SAMPLE_RATE``."""
    if len(data) == 0:
        raise AudioError("zero_length", f"{where} holds no audio frames; export it again or drop it")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    _check_scale(mono, where)
    mono = mono.astype(np.float32, copy=False)
    if rate != SAMPLE_RATE:
        import librosa

        mono = librosa.resample(mono, orig_sr=rate, target_sr=SAMPLE_RATE, res_type=RESAMPLE_TYPE)
        _check_scale(mono, where)  # a resampler fed extreme values may overshoot or overflow
    return np.ascontiguousarray(mono, dtype=np.float32)


def _check_scale(samples: np.ndarray, where: str) -> None:
    """Refuse NaN/inf samples and peaks beyond ``MAX_PEAK`` (``out_of_range``).

    Out-of-range audio is skipped, not rescaled: int16 values stored as float (peak up to
    32768) could as well be int24 or a broken gain, and a guessed scale would slip quiet or
    clipped clips into the training data unseen. A skip names the file and the fix, once.
    """
    if not np.isfinite(samples).all():
        raise AudioError(
            "non_finite", f"{where} has NaN or infinite samples (a broken float export); re-export it"
        )
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak <= MAX_PEAK:
        return
    if peak <= INT16_FULL_SCALE:
        why = "looks like int16 sample values stored as float; divide by 32768 or re-export as PCM_16"
    else:
        why = "is far beyond any audio level; re-export it from the source"
    raise AudioError("out_of_range", f"{where}: peak {peak:.4g} (float audio is full scale at 1.0) {why}")


def _read(path: str | os.PathLike, offset: float = 0.0, duration: float | None = None) -> np.ndarray:
    """Decode a range to 16 kHz mono float32 without judging its content (see ``_check_content``)."""
    p = _check_path(path)
    _check_range_args(p, offset, duration)
    read = _read_soundfile(p, offset, duration)
    data, rate = read if read is not None else _read_fallback(p, offset, duration)
    return _to_mono_16k(data, rate, _where(p, offset, duration))


def frame_rms(samples: np.ndarray) -> np.ndarray:
    """RMS of ``FRAME_LENGTH`` windows every ``HOP_LENGTH`` samples: ``(T,)`` -> ``(frames,)``.

    Uses a cumulative sum of squares, so a 5-minute chunk costs one pass and no frame copies.
    """
    n = len(samples)
    if n == 0:
        return np.zeros(0)
    if n < FRAME_LENGTH:
        return np.sqrt(np.mean(np.square(samples, dtype=np.float64)))[None]
    cumsum = np.concatenate([[0.0], np.cumsum(np.square(samples, dtype=np.float64))])
    starts = np.arange(0, n - FRAME_LENGTH + 1, HOP_LENGTH)
    energy = (cumsum[starts + FRAME_LENGTH] - cumsum[starts]) / FRAME_LENGTH
    return np.sqrt(np.maximum(energy, 0.0))


def _check_content(samples: np.ndarray, where: str) -> np.ndarray:
    """Refuse audio too short or too quiet to hold speech; clipping is kept on purpose.

    Silence is judged after removing the DC offset: a constant signal (a bad microphone
    bias, a converter stuck at one value) holds no sound however far it sits from zero.
    """
    if len(samples) < MIN_SAMPLES:
        raise AudioError(
            "too_short",
            f"{where} is {1000 * len(samples) / SAMPLE_RATE:.0f} ms, under {1000 * MIN_DURATION_S:.0f} ms; "
            "nothing to transcribe",
        )
    dc = float(np.mean(samples, dtype=np.float64))
    centred = samples - np.float32(dc)
    peak = float(np.max(np.abs(centred)))
    loudest = float(np.max(frame_rms(centred)))
    # The loudest frame, not the mean: one short word in a quiet stretch must not be dropped.
    if peak < SILENCE_PEAK or loudest < SILENCE_RMS:
        db = 20 * math.log10(max(loudest, 1e-12))
        offset = f" apart from a constant DC offset of {dc:.3g}" if abs(dc) >= SILENCE_PEAK else ""
        raise AudioError(
            "silent",
            f"{where} is silent{offset} (peak {peak:.1e}, loudest frame {db:.0f} dBFS, "
            f"threshold {SILENCE_RMS_DBFS:.0f} dBFS); nothing to transcribe",
        )
    return samples


def load_audio(path: str | os.PathLike, offset: float = 0.0, duration: float | None = None) -> np.ndarray:
    """Load ``[offset, offset + duration)`` of a file as ``(samples,)`` float32 mono at 16 kHz.

    Channels are averaged and any rate is resampled (soxr_hq). Only the frames asked for are
    read. A ``duration`` up to ``RANGE_TOLERANCE_S`` past the end is clipped, since manifests
    round durations.

    Raises:
        AudioError: with a reason from ``SKIP_REASONS``; never another exception for bad audio.
    """
    samples = _read(path, offset, duration)
    return _check_content(samples, _where(path, offset, duration))


def write_wav(path: str | os.PathLike, samples: np.ndarray) -> None:
    """Write 16 kHz 16-bit PCM under a temporary name, then rename.

    A killed job leaves no truncated file that a rerun would take as finished.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(tmp, samples, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def _import_audioread():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # aifc/audioop/sunau on Python 3.11+
        import audioread
        from audioread.rawread import RawAudioFile
    return audioread, RawAudioFile


def _info_fallback(path: Path) -> tuple[float, int, int]:
    try:
        audioread, _ = _import_audioread()
        with audioread.audio_open(str(path)) as f:
            return float(f.duration), int(f.samplerate), int(f.channels)
    except Exception as e:  # audioread raises backend-specific types
        raise _unreadable(path, e) from e


def audio_info(path: str | os.PathLike) -> tuple[float, int, int]:
    """``(duration_s, sample_rate, channels)`` from the header, without decoding the audio.

    Raises:
        AudioError: ``missing``, ``not_a_file``, ``empty_file``, ``unreadable`` or ``zero_length``.
    """
    p = _check_path(path)
    try:
        with _soundfile(p) as f:
            frames, rate, channels = f.frames, f.samplerate, f.channels
    except Exception as e:  # libsndfile reports every open failure the same way
        if p.suffix.lower() not in FALLBACK_EXTENSIONS:
            raise _unreadable(p, e) from e
        duration, rate, channels = _info_fallback(p)
        frames = round(duration * rate)
    if frames <= 0:
        raise AudioError("zero_length", f"{p} holds no audio frames; export it again or drop it")
    return frames / rate, rate, channels


def fallback_decoder_available() -> bool:
    """Whether containers libsndfile cannot read (m4a, aac...) can be decoded here.

    audioread's built-in ``RawAudioFile`` reads only wav/aiff/au; anything more needs ffmpeg,
    GStreamer or Core Audio.
    """
    try:
        audioread, RawAudioFile = _import_audioread()
    except ImportError:
        return False
    return any(backend is not RawAudioFile for backend in audioread.available_backends())


def _cut_point(energy: np.ndarray, start: int, end: int, max_n: int, min_n: int) -> int:
    """The quietest sample position in the last third of ``[start, start + max_n]``."""
    lo = start + max(min_n, max_n - round(max_n * CUT_SEARCH_FRACTION))
    hi = min(start + max_n, end - min_n)
    if hi < lo:  # min_s too large for max_s: honour max_s
        return start + max_n
    half = FRAME_LENGTH // 2  # a frame's position is its centre
    first = max(0, math.ceil((lo - half) / HOP_LENGTH))
    last = min(len(energy) - 1, (hi - half) // HOP_LENGTH)
    if last < first:
        return hi
    return (first + _middle_of_quietest_run(energy[first : last + 1])) * HOP_LENGTH + half


def _middle_of_quietest_run(energy: np.ndarray) -> int:
    """Index of the quietest frame; in a run of equally quiet frames, the run's middle.

    Digital silence gives many zero-energy frames: cutting in the middle keeps a margin of
    pause on both sides instead of clipping the end of the previous word.
    """
    start = int(np.argmin(energy))
    quiet = energy[start:] <= energy[start] + QUIET_TIE
    run = len(quiet) if quiet.all() else int(np.argmin(quiet))
    return start + (run - 1) // 2


def split_at_pauses(
    samples: np.ndarray, max_s: float = MAX_SEGMENT_S, min_s: float = MIN_SEGMENT_S
) -> list[tuple[float, float]]:
    """Cut 16 kHz audio into ``(start_s, end_s)`` pieces of at most ``max_s``, at pauses.

    Pieces are contiguous and cover the audio. Each cut is the quietest ``QUIET_REGION_S``
    stretch (mean frame energy) in the last third of the allowed window, so words are not split
    and pieces stay long. No piece is shorter than ``min_s`` unless the audio is.

    Args:
        samples: ``(T,)`` audio at ``SAMPLE_RATE``.
        max_s: Longest piece, in seconds.
        min_s: Shortest piece a cut may leave, in seconds; at most ``max_s / 3``.
    """
    if not (0 < min_s and 3 * min_s <= max_s):
        raise ValueError(f"split_at_pauses needs 0 < min_s <= max_s / 3, got min_s={min_s}, max_s={max_s}")
    n = len(samples)
    max_n, min_n = round(max_s * SAMPLE_RATE), round(min_s * SAMPLE_RATE)
    if n <= max_n:
        return [(0.0, n / SAMPLE_RATE)]
    energy = np.square(frame_rms(samples))
    energy = np.convolve(energy, np.full(QUIET_REGION_FRAMES, 1 / QUIET_REGION_FRAMES), mode="same")
    cuts = [0]
    while n - cuts[-1] > max_n:
        cuts.append(_cut_point(energy, cuts[-1], n, max_n, min_n))
    cuts.append(n)
    return [(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _skip(utt: Utterance, err: AudioError, duration: float | None = None) -> Skip:
    return Skip.of(utt, err.reason, err.message, duration)


def _segment(utt: Utterance, offset: float, duration: float) -> Utterance:
    """A piece of a long utterance; its id says where it starts within ``utt``."""
    return Utterance(
        id=f"{utt.id}@{offset - utt.offset:.2f}",
        audio_filepath=utt.audio_filepath,
        duration=duration,
        offset=offset,
        text=None,  # a reference transcript cannot be split with the audio
        speaker=utt.speaker,
    )


def _split(
    chunk: np.ndarray, segmenter: str, max_s: float, cut_pause_s: float | None = None
) -> list[tuple[float, float, bool]]:
    """Contiguous ``(start_s, end_s, speech)`` pieces of a chunk, by the named segmenter."""
    if segmenter == "silero":
        from .vad import split_at_speech

        return split_at_speech(chunk, max_s, cut_pause_s)
    return [(a, b, True) for a, b in split_at_pauses(chunk, max_s)]


def _iter_pieces(
    utt: Utterance, chunk: np.ndarray, pos: float, pieces: list[tuple[float, float, bool]]
) -> Iterator[tuple[Utterance, np.ndarray] | Skip]:
    for a, b, speech in pieces:
        seg = _segment(utt, pos + a, b - a)
        if not speech:
            where = _where(utt.audio_filepath, seg.offset, seg.duration)
            yield Skip.of(seg, NO_SPEECH, f"{where}: Silero VAD found no speech here; left out of labeling")
            continue
        samples = chunk[round(a * SAMPLE_RATE) : round(b * SAMPLE_RATE)]
        try:
            _check_content(samples, _where(utt.audio_filepath, seg.offset, seg.duration))
        except AudioError as e:
            yield _skip(seg, e)
            continue
        yield seg, samples


def _iter_long(
    utt: Utterance, segmenter: str = "energy", max_s: float = MAX_SEGMENT_S, cut_pause_s: float | None = None
) -> Iterator[tuple[Utterance, np.ndarray] | Skip]:
    """Read ``LONG_CHUNK_S`` at a time, split each chunk, and carry its last piece to the next.

    The carried piece is re-read with the next chunk, so every cut sees audio on both sides.
    A chunk that comes back whole as one piece (no speech in it at all) is passed, not carried.
    """
    end = utt.offset + utt.duration
    pos = utt.offset
    while end - pos > 1 / SAMPLE_RATE:
        span = min(LONG_CHUNK_S, end - pos)
        try:
            chunk = _read(utt.audio_filepath, pos, span)
        except AudioError as e:
            local = e.reason in CHUNK_LOCAL_REASONS
            yield _skip(_segment(utt, pos, span), e, duration=span if local else end - pos)
            if not local:
                return
            pos += span
            continue
        pieces = _split(chunk, segmenter, max_s, cut_pause_s)
        # a chunk of one window's length or less was a short read: nothing follows it
        final = end - pos <= LONG_CHUNK_S or len(chunk) <= round(MAX_SEGMENT_S * SAMPLE_RATE)
        yield from _iter_pieces(utt, chunk, pos, pieces if final else pieces[:-1] or pieces)
        if final:
            return
        pos += pieces[-1][0] if len(pieces) > 1 else pieces[0][1]


def iter_segments(
    utt: Utterance, segmenter: str = "energy", max_s: float = MAX_SEGMENT_S, cut_pause_s: float | None = None
) -> Iterator[tuple[Utterance, np.ndarray] | Skip]:
    """Yield ``(utterance, samples)`` windows of at most ``max_s``, or ``Skip`` records.

    An utterance of up to ``max_s`` comes back whole. A longer one is cut at pauses into segments
    whose id is ``f"{utt.id}@{start:.2f}"`` (start relative to the utterance), with absolute
    ``offset``/``duration`` and no ``text``. A bad segment (say, silence) is skipped on its own.

    Args:
        utt: the manifest record.
        segmenter: how a long recording is cut. ``energy``: at the quietest stretch in the
            last third of each window (``split_at_pauses``), no extra dependency. ``silero``:
            Silero VAD speech regions merged at the longest pauses (``vad.split_at_speech``);
            stretches of 3 s or more without speech become ``no_speech`` skips.
        max_s: longest segment, at most Whisper's 30 s window. Shorter segments cost more
            encoder windows but keep unrelated utterances out of each other's context.
        cut_pause_s: ``silero`` only: a pause at least this long always ends a segment
            (``vad.plan_pieces``); None: ``vad.CUT_PAUSE_S``, ``math.inf``: packed up to ``max_s``.

    Raises:
        ValueError: an unknown ``segmenter``, ``max_s`` outside ``SEGMENT_S_RANGE``, or a
            ``cut_pause_s`` that is not positive or not for ``silero``.
        ImportError: ``silero`` without the ``vad`` extra installed.
    """
    check_segmenting(segmenter, max_s, cut_pause_s)
    if utt.duration > max_s:
        yield from _iter_long(utt, segmenter, max_s, cut_pause_s)
        return
    try:
        samples = load_audio(utt.audio_filepath, utt.offset, utt.duration)
    except AudioError as e:
        yield _skip(utt, e)
        return
    yield utt, samples


def check_segmenting(segmenter: str, max_s: float, cut_pause_s: float | None = None) -> None:
    """Refuse an unknown segmenter, a longest segment outside ``SEGMENT_S_RANGE``, a bad pause cut.

    Raises:
        ValueError: which one, and what is allowed.
    """
    if segmenter not in SEGMENTERS:
        raise ValueError(f"segmenter must be one of {SEGMENTERS}, got {segmenter!r}")
    lo, hi = SEGMENT_S_RANGE
    if not lo <= max_s <= hi:
        raise ValueError(f"the longest segment must be between {lo} and {hi} s, got {max_s}")
    if cut_pause_s is not None and (segmenter != "silero" or not cut_pause_s > 0):
        raise ValueError(f"a pause cut (got {cut_pause_s}) needs the silero segmenter and a length above 0 s")


def iter_audio(
    records: Iterable[Utterance | Skip],
) -> Iterator[tuple[Utterance, np.ndarray] | Skip]:
    """``iter_segments`` over a stream of records (e.g. ``read_manifest``); skips pass through."""
    for record in records:
        if isinstance(record, Skip):
            yield record
        else:
            yield from iter_segments(record)


__all__ = [
    "MAX_SEGMENT_S",
    "NO_SPEECH",
    "SAMPLE_RATE",
    "SEGMENTERS",
    "SEGMENT_S_RANGE",
    "check_segmenting",
    "SKIP_REASONS",
    "AudioError",
    "audio_info",
    "fallback_decoder_available",
    "frame_rms",
    "iter_audio",
    "iter_segments",
    "load_audio",
    "split_at_pauses",
]
