"""Broken and awkward audio inputs, written on demand with numpy + soundfile (no binaries in git).

``make_bad_inputs(dir)`` returns one ``BadCase`` per input with the skip reason the loader must
give (``None``: the audio must be kept). Tests drive the whole table through ``read_manifest``
and ``iter_segments``, so each new failure seen in the wild becomes one more row here.

``write_job_manifest(dir, speech)`` goes one level up, to a whole labeling job: those files,
broken and awkward manifest lines (``manifest_cases``) and an hour-long recording
(``make_one_hour``) in one manifest, with the outcome each must get from ``asr-distill label``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
SEED = 1234
SPEECH_AMPLITUDE = 0.3
FLOOR_NOISE_STD = 0.003  # ~ -50 dBFS room noise: quiet, yet not "silent" (-60 dBFS)
TRUNCATED_FLAC_FRACTION = 0.4  # libsndfile raises "flac decoder lost sync" -> unreadable

LONG_RATE = 8000  # the 35-minute file is 8 kHz PCM_16: ~34 MB on disk
LONG_SECONDS = 35 * 60
LONG_PERIOD_S = 7.5  # each period: speech-like burst, then a pause
LONG_PAUSE_S = 1.5  # the pause closes each period: [k*P + P - pause, (k+1)*P)


@dataclass(frozen=True)
class BadCase:
    """One input and its expected fate.

    Attributes:
        name: Short id, also used as the manifest ``id``.
        path: The file (or directory, or missing path) given as ``audio_filepath``.
        reason: Expected skip reason; None when the audio must be kept.
        duration: Duration to put in a manifest line (None: unknown, read the header).
        samples: Expected length at 16 kHz when kept and exactly predictable, else None.
    """

    name: str
    path: Path
    reason: str | None
    duration: float | None = None
    samples: int | None = None


def speechlike(seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Harmonics of a wandering pitch, syllable-rate modulated, plus breath noise: ``(T,)`` float32."""
    t = np.arange(round(seconds * rate)) / rate
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in (1, 2, 3, 5) if k * 170 < rate / 2)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t)
    noise = 0.05 * rng.standard_normal(len(t))
    signal = SPEECH_AMPLITUDE * (envelope * voice / 2 + noise)
    return signal.astype(np.float32)


def long_recording(rng: np.random.Generator) -> np.ndarray:
    """35 minutes at 8 kHz: bursts of speech-like sound, each followed by a floor-noise pause."""
    period = round(LONG_PERIOD_S * LONG_RATE)
    burst = round((LONG_PERIOD_S - LONG_PAUSE_S) * LONG_RATE)
    one = np.concatenate(
        [speechlike(burst / LONG_RATE, LONG_RATE, rng), np.zeros(period - burst, np.float32)]
    )
    periods = int(np.ceil(LONG_SECONDS * LONG_RATE / period))
    audio = np.tile(one, periods)[: LONG_SECONDS * LONG_RATE]
    audio += (FLOOR_NOISE_STD * rng.standard_normal(len(audio))).astype(np.float32)
    return audio


def _write(path: Path, data: np.ndarray, rate: int, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, rate, **kwargs)
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _valid_bytes(d: Path, rng: np.random.Generator, name: str, **kwargs) -> bytes:
    return _write(d / "src" / name, speechlike(2.0, RATE, rng), RATE, **kwargs).read_bytes()


def _with(value: float, where: slice | int, rng: np.random.Generator) -> np.ndarray:
    audio = speechlike(2.0, RATE, rng)
    audio[where] = value
    return audio


def _truncated_flac(d: Path, rng: np.random.Generator) -> Path:
    flac = _valid_bytes(d, rng, "ok.flac")
    return _bytes(d / "trunc.flac", flac[: int(len(flac) * TRUNCATED_FLAC_FRACTION)])


def _six_channels(d: Path, rng: np.random.Generator) -> Path:
    six = np.stack([speechlike(1.0, 48000, rng) for _ in range(6)], axis=1)
    return _write(d / "surround.wav", six, 48000)


def _stereo(d: Path, rng: np.random.Generator) -> Path:
    stereo = np.stack([speechlike(1.5, 44100, rng), speechlike(1.5, 44100, rng)], axis=1)
    return _write(d / "stereo.flac", stereo, 44100)


def _float(path: Path, data: np.ndarray, rate: int) -> Path:
    return _write(path, data, rate, subtype="FLOAT")


def _peak(audio: np.ndarray, peak: float) -> np.ndarray:
    return (audio * (peak / np.max(np.abs(audio)))).astype(np.float32)


def _zero_data_size(d: Path, rng: np.random.Generator) -> Path:
    """PCM_16 whose ``data`` chunk size field is 0 (a recorder killed before the header was done)."""
    data = bytearray(_valid_bytes(d, rng, "ok_pcm16.wav", subtype="PCM_16"))
    at = data.find(b"data") + 4
    data[at : at + 4] = bytes(4)
    return _bytes(d / "zero_data_size.wav", bytes(data))


def _long(d: Path, rng: np.random.Generator) -> Path:
    return _write(d / "long" / "lecture.wav", long_recording(rng), LONG_RATE, subtype="PCM_16")


@dataclass(frozen=True)
class _Spec:
    name: str
    reason: str | None
    write: Callable[[Path, np.random.Generator], Path]
    duration: float | None = None
    samples: int | None = None


# name, expected reason (None: kept), writer, manifest duration, expected 16 kHz length.
SPECS: list[_Spec] = [
    _Spec("empty_file", "empty_file", lambda d, r: _bytes(d / "empty.wav", b"")),
    _Spec(
        "zero_length", "zero_length", lambda d, r: _write(d / "zero.wav", np.zeros(0, np.float32), RATE), 1.0
    ),
    _Spec(
        "truncated_wav_header",
        "unreadable",
        lambda d, r: _bytes(d / "trunc_header.wav", _valid_bytes(d, r, "ok.wav", subtype="PCM_16")[:20]),
        2.0,
    ),
    _Spec("truncated_flac", "unreadable", _truncated_flac, 2.0),
    _Spec("random_bytes_wav", "unreadable", lambda d, r: _bytes(d / "random.wav", r.bytes(4096)), 1.0),
    _Spec("text_as_flac", "unreadable", lambda d, r: _bytes(d / "notes.flac", b"not audio\n" * 20), 1.0),
    _Spec("random_bytes_m4a", "unreadable", lambda d, r: _bytes(d / "random.m4a", r.bytes(4096)), 1.0),
    _Spec(
        "silent", "silent", lambda d, r: _write(d / "silent.wav", np.zeros(2 * RATE, np.float32), RATE), 2.0
    ),
    _Spec(
        "near_silent_dither",
        "silent",
        lambda d, r: _write(d / "dither.flac", (3e-5 * r.standard_normal(2 * RATE)).astype(np.float32), RATE),
        2.0,
    ),
    _Spec(
        "nan_samples",
        "non_finite",
        lambda d, r: _write(d / "nan.wav", _with(np.nan, slice(1000, 1010), r), RATE, subtype="FLOAT"),
        2.0,
    ),
    _Spec(
        "inf_samples",
        "non_finite",
        lambda d, r: _write(d / "inf.wav", _with(np.inf, 500, r), RATE, subtype="FLOAT"),
        2.0,
    ),
    _Spec(
        "too_short", "too_short", lambda d, r: _write(d / "short.wav", speechlike(0.05, RATE, r), RATE), 0.05
    ),
    _Spec("missing", "missing", lambda d, r: d / "nowhere" / "missing.wav", 1.0),
    _Spec("directory", "not_a_file", lambda d, r: _folder(d / "a_folder.wav"), 1.0),
    _Spec(
        "clipped",
        None,
        lambda d, r: _write(
            d / "clipped.wav", np.clip(4 * speechlike(2.0, RATE, r), -1, 1), RATE, subtype="PCM_16"
        ),
        2.0,
        2 * RATE,
    ),
    _Spec("8khz", None, lambda d, r: _write(d / "narrow.wav", speechlike(2.0, 8000, r), 8000), 2.0, 2 * RATE),
    _Spec("44k1_stereo", None, _stereo, 1.5, 24000),
    _Spec("6_channels", None, _six_channels, 1.0, RATE),
    _Spec(
        "unicode_space_path",
        None,
        lambda d, r: _write(d / "ünï cödé" / "テスト speech file.flac", speechlike(1.0, RATE, r), RATE),
        1.0,
        RATE,
    ),
    _Spec("ogg_vorbis", None, lambda d, r: _write(d / "vorbis.ogg", speechlike(1.0, 22050, r), 22050), 1.0),
    _Spec("35_minutes", None, _long, float(LONG_SECONDS), LONG_SECONDS * RATE),
]
if "MP3" in sf.available_formats():  # libsndfile >= 1.1 reads and writes mp3
    SPECS.append(
        _Spec("mp3", None, lambda d, r: _write(d / "speech.mp3", speechlike(1.0, RATE, r), RATE), 1.0)
    )
# Issue 12, added last so the cases above keep their bytes. Library level (audio.py); the label
# CLI sees them too, through write_job_manifest.
SPECS.extend(
    [
        _Spec(
            "float_int16_range",
            "out_of_range",
            lambda d, r: _float(d / "int16_as_float.wav", _peak(speechlike(2.0, RATE, r), 16384), RATE),
            2.0,
        ),
        _Spec(
            "float_x1e20",
            "out_of_range",
            lambda d, r: _float(d / "x1e20.wav", speechlike(2.0, RATE, r) * np.float32(1e20), RATE),
            2.0,
        ),
        _Spec(
            "float_x1e12_8khz",  # through the resampler
            "out_of_range",
            lambda d, r: _float(d / "x1e12.wav", speechlike(2.0, 8000, r) * np.float32(1e12), 8000),
            2.0,
        ),
        _Spec(
            "dc_only",
            "silent",
            lambda d, r: _float(d / "dc.wav", np.full(2 * RATE, 0.25, np.float32), RATE),
            2.0,
        ),
        _Spec("zero_data_chunk_size", None, _zero_data_size, 2.0, 2 * RATE),
    ]
)
CASE_NAMES = [s.name for s in SPECS]
LONG_CASE = "35_minutes"


def make_bad_inputs(directory: str | Path, include_long: bool = True) -> list[BadCase]:
    """Write every case under ``directory`` and return the table (deterministic content).

    Args:
        directory: A scratch folder (a pytest ``tmp_path``); the long file takes ~34 MB there.
        include_long: Also write the 35-minute file (about a second to make).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    return [
        BadCase(s.name, s.write(d, rng), s.reason, s.duration, s.samples)
        for s in SPECS
        if include_long or s.name != LONG_CASE
    ]


# --- A whole labeling job's worth of bad input: audio cases, bad manifest lines, one hour ---

HOUR_RATE = 8000  # 8 kHz PCM_16: 3600 s is ~57.6 MB on disk
HOUR_SECONDS = 3600
HOUR_FLOOR_STD = 3e-5  # ~ -90 dBFS room tone: every window without a burst is "silent"
HOUR_BURST_EVERY_S = 600.0  # a real spoken utterance every ten minutes, six in all
HOUR_CASE = "one_hour"


@dataclass(frozen=True)
class ManifestCase:
    """One manifest line and what a label run must make of it.

    Attributes:
        name: What is wrong with the line (also its ``id`` where the line can carry one).
        line: The raw text written to the manifest (no newline).
        expect_id: The id the run reports the outcome under (broken lines: ``file:lineN``).
        reason: Expected skip reason; None when the line must be labeled.
    """

    name: str
    line: str
    expect_id: str
    reason: str | None


def one_hour_recording(speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An hour at 8 kHz: near-silent room tone with ``speech`` (8 kHz) every ten minutes.

    Only the windows that hold a burst cost a model call; the rest must come back as
    ``silent`` skips, so a test can label the whole hour in seconds while the loader still
    reads, resamples and cuts every one of its 3600 s.
    """
    audio = (HOUR_FLOOR_STD * rng.standard_normal(HOUR_SECONDS * HOUR_RATE)).astype(np.float32)
    for start in np.arange(HOUR_BURST_EVERY_S / 2, HOUR_SECONDS, HOUR_BURST_EVERY_S):
        at = round(start * HOUR_RATE)
        audio[at : at + len(speech)] += speech
    return audio


def make_one_hour(directory: str | Path, speech_file: str | Path) -> Path:
    """Write the hour-long file (``speech_file`` resampled to 8 kHz as its bursts)."""
    import librosa

    speech, rate = sf.read(str(speech_file), dtype="float32", always_2d=False)
    speech = librosa.resample(speech, orig_sr=rate, target_sr=HOUR_RATE).astype(np.float32)
    audio = one_hour_recording(speech, np.random.default_rng(SEED))
    return _write(Path(directory) / "hour long" / "meeting.wav", audio, HOUR_RATE, subtype="PCM_16")


def _obj(**fields) -> str:
    import json

    return json.dumps(fields, ensure_ascii=False)


def manifest_cases(speech_file: Path, speech_s: float, folder: Path) -> list[ManifestCase]:
    """Bad (and awkward but valid) manifest lines around one good clip of ``speech_s`` seconds.

    Lines that do not parse are reported under ``{manifest name}:line{N}``, filled in by
    ``write_job_manifest`` once line numbers are known (``expect_id`` ``"@line"`` here).
    """
    rel = os.path.relpath(speech_file, folder)
    good = str(speech_file)
    return [
        ManifestCase("broken_json", '{"audio_filepath": "' + good + '", "dura', "@line", "bad_manifest_line"),
        ManifestCase("json_array", f'["{good}", {speech_s}]', "@line", "bad_manifest_line"),
        ManifestCase("json_string", '"just a string"', "@line", "bad_manifest_line"),
        ManifestCase("empty_object", "{}", "@line", "bad_manifest_line"),
        ManifestCase(
            "missing_audio_filepath",
            _obj(id="missing_audio_filepath", duration=1.0),
            "missing_audio_filepath",
            "bad_manifest_line",
        ),
        ManifestCase(
            "audio_filepath_number",
            _obj(id="audio_filepath_number", audio_filepath=7, duration=1.0),
            "audio_filepath_number",
            "bad_manifest_line",
        ),
        ManifestCase(
            "negative_duration",
            _obj(id="negative_duration", audio_filepath=good, duration=-2.0),
            "negative_duration",
            "bad_manifest_line",
        ),
        ManifestCase(
            "string_duration",
            _obj(id="string_duration", audio_filepath=good, duration="2.5s"),
            "string_duration",
            "bad_manifest_line",
        ),
        ManifestCase(
            "nan_duration",  # Python's json reads the NaN literal other tools write
            '{"id": "nan_duration", "audio_filepath": "' + good + '", "duration": NaN}',
            "nan_duration",
            "bad_manifest_line",
        ),
        ManifestCase(
            "negative_offset",
            _obj(id="negative_offset", audio_filepath=good, duration=1.0, offset=-1.0),
            "negative_offset",
            "bad_manifest_line",
        ),
        ManifestCase(
            "text_not_string",
            _obj(id="text_not_string", audio_filepath=good, duration=1.0, text=42),
            "text_not_string",
            "bad_manifest_line",
        ),
        ManifestCase(
            "duration_past_end",
            _obj(id="duration_past_end", audio_filepath=good, duration=round(speech_s + 5.0, 2)),
            "duration_past_end",
            "bad_range",
        ),
        ManifestCase(
            "huge_duration",
            _obj(id="huge_duration", audio_filepath=good, duration=1e9),
            "huge_duration",
            "bad_range",
        ),
        ManifestCase(
            "offset_past_end",
            _obj(id="offset_past_end", audio_filepath=good, duration=1.0, offset=round(speech_s + 10.0, 2)),
            "offset_past_end",
            "bad_range",
        ),
        ManifestCase(
            "duplicate_id",
            _obj(id="duplicate_id", audio_filepath=good, duration=speech_s),
            "duplicate_id",
            None,
        ),  # the first use of an id is labeled...
        ManifestCase(
            "duplicate_id_again",
            _obj(id="duplicate_id", audio_filepath=good, duration=speech_s),
            "duplicate_id",
            "duplicate_id",
        ),  # ...the second is a recorded skip
        ManifestCase(
            "missing_duration", _obj(id="missing_duration", audio_filepath=good), "missing_duration", None
        ),  # read from the header
        ManifestCase(
            "duration_shorter_than_file",
            _obj(id="duration_shorter_than_file", audio_filepath=good, duration=round(speech_s / 2, 2)),
            "duration_shorter_than_file",
            None,
        ),  # a legal slice: the first half is labeled
        ManifestCase(
            "relative_path",
            _obj(id="relative_path", audio_filepath=rel, duration=speech_s),
            "relative_path",
            None,
        ),
        ManifestCase("numeric_id", _obj(id=4242, audio_filepath=good, duration=speech_s), "4242", None),
        ManifestCase(
            "unicode_id",
            _obj(id="ユニコード id", audio_filepath=good, duration=speech_s),
            "ユニコード id",
            None,
        ),
        # issue 12: one Latin-1 byte (0xe9, written through surrogateescape) is one bad line
        ManifestCase(
            "latin1_byte",
            _obj(id="latin1_byte", audio_filepath=good, text="caf" + LATIN1_E_ACUTE),
            "@line",
            "bad_manifest_line",
        ),
    ]


LATIN1_E_ACUTE = "\udce9"  # "é" in Latin-1: the byte 0xe9, which is not UTF-8 on its own
LABELED = "label"  # the outcome "a TeacherLabel was written" in ``write_job_manifest``'s table


def write_job_manifest(
    directory: str | Path, speech_file: str | Path, include_hour: bool = True
) -> tuple[Path, dict[str, set[str]]]:
    """Write every bad case (audio files, manifest lines, the hour) and one manifest naming them.

    Returns the manifest and ``{id: outcomes}``, an outcome being a skip reason or ``LABELED``.
    Segments of a long file count under the file's id (``one_hour@600.00`` -> ``one_hour``):
    the hour must give labels for its bursts and ``silent`` skips for the rest. A duplicated
    id gives a label (first line) and a ``duplicate_id`` skip (second line).
    """
    d = Path(directory)
    speech_file = Path(speech_file).resolve()  # lines name it absolutely (one case is relative)
    speech_s = round(sf.info(str(speech_file)).duration, 3)
    audio_cases = make_bad_inputs(d / "audio", include_long=False)
    manifest = d / "job manifest.jsonl"
    lines: list[str] = []
    expected: dict[str, set[str]] = {}
    for case in audio_cases:
        fields = {"id": case.name, "audio_filepath": str(case.path)}
        if case.duration is not None:
            fields["duration"] = case.duration
        lines.append(_obj(**fields))
        expected.setdefault(case.name, set()).add(case.reason or LABELED)
    for case in manifest_cases(speech_file, speech_s, d):
        lines.append(case.line)
        expect_id = f"{manifest.name}:line{len(lines)}" if case.expect_id == "@line" else case.expect_id
        expected.setdefault(expect_id, set()).add(case.reason or LABELED)
    if include_hour:
        hour = make_one_hour(d / "audio", speech_file)
        lines.append(_obj(id=HOUR_CASE, audio_filepath=str(hour), duration=float(HOUR_SECONDS)))
        expected[HOUR_CASE] = {LABELED, "silent"}
    # issue 12: a UTF-8 BOM first (Windows editors write one): the first line must still be read
    text = "\ufeff" + "".join(line + "\n" for line in lines)
    manifest.write_text(text, encoding="utf-8", errors="surrogateescape")
    return manifest, expected


def job_case_names(expected: dict[str, set[str]]) -> int:
    """How many distinct bad inputs a job manifest holds (the duplicated id counts twice)."""
    return sum(len(v) if k == "duplicate_id" else 1 for k, v in expected.items())


def observed_outcomes(labels: list[dict], skips: list[dict]) -> dict[str, set[str]]:
    """``{case id: outcomes}`` from a label run's two files, segments folded into their file."""
    seen: dict[str, set[str]] = {}
    for d in labels:
        seen.setdefault(d["id"].split("@")[0], set()).add(LABELED)
    for d in skips:
        seen.setdefault(d["id"].split("@")[0], set()).add(d["reason"])
    return seen


# --- configs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigCase:
    """A bad YAML config given to a stage's CLI: exit code 2 before any work.

    The message contains ``names`` (the key or field, so the user knows what to fix).
    """

    name: str
    argv: tuple[str, ...]  # after ``asr-distill``
    names: str


CONFIG_CASE_NAMES = [
    "run_unknown_key",
    "run_unknown_nested_key",
    "run_wrong_type",
    "run_not_yaml",
    "run_missing_file",
    "train_unknown_key",
    "train_wrong_type",
]


def config_cases(directory: str | Path) -> list[ConfigCase]:
    """Bad configs for ``asr-distill run`` and ``asr-distill train``, written under ``directory``.

    Unknown keys, wrong types and broken YAML.
    """
    import yaml

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    run_ok = {"out": str(d / "run"), "data": {"train": "train.jsonl"}, "label": {"teacher": "tiny.en"}}

    def dump(name: str, obj) -> str:
        (d / name).write_text(obj if isinstance(obj, str) else yaml.safe_dump(obj), encoding="utf-8")
        return str(d / name)

    train_ok = {
        "model": {"teacher": "tiny.en", "init": "tiny.en", "kl_weight": 0.0},
        "data": {"train_manifest": "train.jsonl"},
        "trainer": {"default_root_dir": str(d / "run")},
    }
    return [
        ConfigCase("run_unknown_key", ("run", dump("unknown.yaml", {**run_ok, "lable": {}})), "lable"),
        ConfigCase(
            "run_unknown_nested_key",
            ("run", dump("nested.yaml", {**run_ok, "filter": {"kepe": 0.5}})),
            "filter.kepe",
        ),
        ConfigCase(
            "run_wrong_type",
            ("run", dump("type.yaml", {**run_ok, "label": {"teacher": "tiny.en", "batch_size": "eight"}})),
            "label.batch_size",
        ),
        ConfigCase(
            "run_not_yaml", ("run", dump("broken.yaml", "data: {train: [unclosed\n")), "not valid YAML"
        ),
        ConfigCase("run_missing_file", ("run", str(d / "missing.yaml")), "does not exist"),
        ConfigCase(
            "train_unknown_key",
            (
                "train",
                "--config",
                dump("train_unknown.yaml", {**train_ok, "model": {**train_ok["model"], "decoder_layerz": 2}}),
            ),
            "decoder_layerz",
        ),
        ConfigCase(
            "train_wrong_type",
            (
                "train",
                "--config",
                dump("train_type.yaml", {**train_ok, "model": {**train_ok["model"], "lr": "fast"}}),
            ),
            "lr",
        ),
    ]


# --- hostile inputs (issue 12), library level ----------------------------------------------
# Each case names its class and whether the CLI still has to be wired to the library check
# (``cli_pending``): tests/test_hostile.py asserts the library outcome of every case now; the
# CLI-level assertions (exit 2, one line, nothing written) come when the commands call
# ``outputs.guard_output`` and ``safe_load.load_checkpoint``.


@dataclass(frozen=True)
class HostileCase:
    name: str
    klass: str  # "reading", "audio", "code", "output", "lock", "review", "cost"
    cli_pending: bool


HOSTILE_CASES = [
    HostileCase("manifest_utf8_bom", "reading", False),  # read_manifest: also in the label CLI job
    HostileCase("manifest_gzip_named_gz", "reading", False),
    HostileCase("manifest_gzip_named_jsonl", "reading", False),
    HostileCase("manifest_latin1_line", "reading", False),  # also in the label CLI job
    HostileCase("manifest_utf16", "reading", False),
    HostileCase("manifest_truncated_gzip", "reading", False),
    HostileCase("float_int16_range", "audio", False),  # SPECS: also in the label CLI job
    HostileCase("float_x1e20", "audio", False),
    HostileCase("float_x1e12_8khz", "audio", False),
    HostileCase("dc_only", "audio", False),
    HostileCase("zero_data_chunk_size", "audio", False),
    HostileCase("x1e20_between_good_clips", "audio", False),
    HostileCase("crafted_pickle_zip", "code", False),  # CLI: export, evaluate (run --from export: pipeline)
    HostileCase("crafted_pickle_legacy", "code", False),
    HostileCase("truncated_checkpoint", "code", False),
    HostileCase("output_is_input", "output", False),  # CLI: label (test_hostile_label)
    HostileCase("output_hard_link_to_input", "output", False),  # CLI: label (test_hostile_label)
    HostileCase("output_symlink_file", "output", False),  # CLI: label (test_hostile_label)
    HostileCase("output_symlink_to_input", "output", False),  # CLI: label (test_hostile_label)
    HostileCase("output_unrelated_file", "output", False),  # CLI: label (test_hostile_label)
    HostileCase("output_unrelated_file_forced", "output", False),  # CLI: label (test_hostile_label)
    HostileCase("output_manifest_as_labels", "output", False),  # CLI: label (test_hostile_label)
    HostileCase("output_dir_unrelated_file", "output", False),  # CLI: filter
    HostileCase("output_dir_is_input_folder", "output", False),  # CLI: review import d/kept.jsonl --out d
    HostileCase("output_dir_would_overwrite_input", "output", False),  # CLI: filter d/kept.jsonl --out d
    HostileCase("output_dir_of_another_step", "output", False),  # CLI: evaluate
    HostileCase("output_dir_named_file_not_ours", "output", False),  # CLI: filter
    HostileCase("resumable_writer_on_foreign_file", "output", False),  # ResumableJsonlWriter refuses
    HostileCase("lock_held_names_holder", "lock", False),  # CLI: label (test_hostile_label)
    HostileCase("lock_probe_for_merge", "lock", False),  # CLI: merge (test_hostile_label)
]
# Filter, review, evaluate, export and report at the CLI (issue 12): the review edits schema,
# the review sheet, bounded-cost scoring, and every writer's guard and lock.
HOSTILE_CASES.extend(
    [
        HostileCase("edits_text_null", "review", False),
        HostileCase("edits_text_list", "review", False),
        HostileCase("edits_text_number", "review", False),
        HostileCase("edits_reject_then_accept", "review", False),
        HostileCase("edits_json_is_a_list", "review", False),
        HostileCase("edits_items_not_objects", "review", False),
        HostileCase("edits_broken_json", "review", False),
        HostileCase("edits_not_utf8", "review", False),
        HostileCase("edits_unknown_decision", "review", False),
        HostileCase("edits_reviewer_not_a_string", "review", False),
        HostileCase("edits_time_not_a_string", "review", False),
        HostileCase("edits_huge_reviewer_name", "review", False),
        HostileCase("edits_reviewer_ansi_escapes", "review", False),
        HostileCase("edits_id_with_control_characters", "review", False),
        HostileCase("edits_identical_duplicates", "review", False),
        HostileCase("review_audit_appended_never_truncated", "review", False),
        HostileCase("review_tsv_formula_cells", "review", False),
        HostileCase("review_import_edits_in_out_folder", "output", False),
        HostileCase("output_dir_kept_symlink", "output", False),
        HostileCase("filter_out_is_a_file", "output", False),
        HostileCase("filter_force_keeps_foreign_files", "output", False),
        HostileCase("filter_write_all_or_nothing", "output", False),
        HostileCase("export_out_is_the_checkpoint", "output", False),
        HostileCase("export_out_unrelated_file", "output", False),
        HostileCase("report_dir_unrelated_file", "output", False),
        HostileCase("lock_held_review_import", "lock", False),
        HostileCase("lock_held_evaluate", "lock", False),
        HostileCase("label_wer_50mb_reference", "cost", False),
        HostileCase("evaluate_50mb_reference", "cost", False),
        HostileCase("filter_cli_5mb_reference", "cost", False),
    ]
)
# label, merge, manifest, synth, train and run at the CLI (issue 12): checked in
# tests/test_hostile_label.py, which also runs the cases above that name a label or merge CLI.
LABEL_HOSTILE_CASES = [
    HostileCase("label_out_is_idless_input", "output", False),
    HostileCase("label_out_other_idless_manifest", "output", False),
    HostileCase("label_skips_file_foreign", "output", False),
    HostileCase("label_out_parent_is_a_file", "output", False),
    HostileCase("label_out_is_a_directory", "output", False),
    HostileCase("label_folder_manifest_foreign", "output", False),
    HostileCase("label_missing_input", "reading", False),
    HostileCase("label_manifest_is_empty_directory", "reading", False),
    HostileCase("label_resume_labels_truncated_mid_line", "output", False),
    HostileCase("label_crafted_model_pt", "code", False),
    HostileCase("label_crafted_model_pt_legacy", "code", False),
    HostileCase("label_truncated_model_pt", "code", False),
    HostileCase("label_cli_gzip_manifest", "reading", False),
    HostileCase("label_cli_bom_manifest", "reading", False),
    HostileCase("label_cli_latin1_line", "reading", False),
    HostileCase("label_cli_utf16_manifest", "reading", False),
    HostileCase("label_cli_x1e20_between_good_clips", "audio", False),
    HostileCase("label_non_finite_features_isolated", "audio", False),
    HostileCase("label_cli_50mb_reference", "cost", False),
    HostileCase("merge_missing_shard", "output", False),
    HostileCase("merge_out_unrelated_file", "output", False),
    HostileCase("merge_out_symlink", "output", False),
    HostileCase("merge_shard_not_labels", "output", False),
    HostileCase("merge_shard_truncated_mid_line", "output", False),
    HostileCase("merge_out_locked_by_label_job", "lock", False),
    HostileCase("manifest_out_unrelated_file", "output", False),
    HostileCase("manifest_out_symlink", "output", False),
    HostileCase("synth_out_unrelated_folder", "output", False),
    HostileCase("synth_out_is_a_file", "output", False),
    HostileCase("run_from_export_crafted_last_ckpt", "code", False),
    HostileCase("run_out_unrelated_folder", "output", False),
    HostileCase("run_out_is_a_file", "output", False),
    HostileCase("run_out_locked", "lock", False),
    HostileCase("train_dir_unrelated_folder", "output", False),
]
LABEL_HOSTILE_NAMES = [c.name for c in LABEL_HOSTILE_CASES]
HOSTILE_CASES.extend(LABEL_HOSTILE_CASES)
HOSTILE_NAMES = [c.name for c in HOSTILE_CASES]


def crafted_pickle(path: str | Path, marker: str | Path, *, legacy: bool) -> Path:
    """A ``.ckpt`` whose unpickling would create the folder ``marker`` (the payload is harmless).

    ``legacy``: a bare pickle stream (what ``torch.load`` reads through its legacy path),
    else a torch zip checkpoint that hides the payload among real tensors.
    """
    import pickle

    import torch

    class Payload:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if legacy:
        path.write_bytes(pickle.dumps({"state_dict": {}, "x": Payload()}, protocol=2))
    else:
        torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": Payload()}, path)
    return path


def manifest_bytes(lines: list[dict]) -> bytes:
    import json

    return "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in lines).encode("utf-8")
