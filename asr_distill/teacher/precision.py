"""What ``--precision auto`` runs the encoder in on this machine: measured once, then cached.

CPU flags say which dtypes are worth trying (float32 always, bf16 where the CPU has bf16
units, float16 on CUDA), not which is faster: on an AVX512-BF16 CPU without AMX, bf16
autocast runs Whisper's encoder about 1.3x slower than float32; on an AMX one, about 1.5x
faster. So the first ``auto`` on a machine times the teacher's own encoder on one window of
the labeler's default size in each candidate, after a warm-up and interleaved, checks that
each candidate agrees with float32 on a fixed clip (the same greedy tokens, encoder output
within ``MAX_REL_DIFF``), and keeps the fastest agreeing one. That costs a second or two.

Decisions are cached as JSON (``cache_path``), keyed by CPU (or GPU) model, torch version,
model name and weights sha256, device and torch thread count, so a torch upgrade or another
model is timed again; ``asr-distill doctor`` prints them with their timings. A crowded CPU
(load above the core count) is not timed: there the ranking flips from run to run and one
probe of Whisper base took minutes, so such a process runs float32, the reference, and the
first process to find the machine quiet times it. A decision timed on a crowded CPU anyway
(``doctor --probe``) stands until then.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..features import SAMPLE_RATE, encode_mels, log_mel_batch
from ..jsonl import OutputLockedError, OutputNotWritableError, acquire_lock, atomic_write_text, release_lock
from .options import DEFAULT_BATCH_SIZE, LabelOptions
from .resolve import Teacher

log = logging.getLogger(__name__)

CACHE_ENV = "ASR_DISTILL_PRECISION_CACHE"  # a file path; else under $ASR_DISTILL_CACHE or XDG's cache
CACHE_FORMAT = "asr_distill.precision"  # marks the file as ours: a foreign file is never replaced
CACHE_VERSION = 1
DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})  # native bf16 matrix units
# The flags that decide how fast the encoder's matrix products can go, for ``doctor`` and benchmarks.
SPEED_FLAGS = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "bf16",
)
REPS = 3  # timed runs per candidate after one warm-up; the fastest run counts
MARGIN = 0.03  # a lower precision must beat float32 by this share: float32 is the reference
MAX_REL_DIFF = 0.05  # ||features - features_fp32|| / ||features_fp32||; bf16 measures about 0.01
PROBE_TOKENS = 32  # greedy tokens decoded from each candidate's features to compare
LOCK_WAIT_S = 120.0  # how long a process waits for another one that is timing the same model

_DECIDED: dict[str, str] = {}  # this process's decisions, by key: one disk read per model


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as ``/proc/cpuinfo`` names it (``platform`` where there is none)."""

    model: str
    flags: frozenset[str]
    cores: int | None

    @property
    def speed_flags(self) -> tuple[str, ...]:
        """The flags of ``SPEED_FLAGS`` this CPU has."""
        return tuple(f for f in SPEED_FLAGS if f in self.flags)


@cache
def cpu_info() -> CpuInfo:
    """This machine's CPU model name, flags and core count."""
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    named = False
    for line in lines:
        name, _, value = (s.strip() for s in line.partition(":"))
        if name == "model name" and not named:
            model, named = value, True
        elif name in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model, flags, os.cpu_count())


def cpu_has_bf16() -> bool:
    """Native bf16 matrix units (AMX or AVX512-BF16): only then is bf16 worth timing on a CPU."""
    return bool(cpu_info().flags & BF16_FLAGS)


def candidates(device: torch.device) -> tuple[str, ...]:
    """The precisions worth timing on ``device``; float32, the reference, comes first."""
    if device.type == "cuda":
        return ("fp32", "fp16")
    if device.type == "cpu" and cpu_has_bf16():
        return ("fp32", "bf16")
    return ("fp32",)


def hardware_name(device: torch.device) -> str:
    """The GPU's name on CUDA, else the CPU's model name."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_info().model


@dataclass(frozen=True)
class Decision:
    """One timed choice: what ``auto`` runs for a model on a machine, and the numbers behind it.

    ``seconds`` holds each candidate's timed runs (one window of ``window_s``, ``batch``
    clips); ``rel_diff`` each one's encoder-output distance from float32 on the probe clip;
    ``agrees`` whether that and the greedy tokens passed.
    """

    chosen: str
    hardware: str
    torch: str
    model: str
    weights_sha256: str
    device: str
    threads: int
    window_s: float
    batch: int
    seconds: dict[str, list[float]]
    rel_diff: dict[str, float]
    agrees: dict[str, bool]
    flags: tuple[str, ...]
    measured: str
    load: float | None = None  # the 1-minute load average when timed (None: not known here)

    @property
    def busy(self) -> bool:
        """Whether other work crowded the CPU while this was timed (see ``machine_busy``)."""
        return self.device == "cpu" and machine_busy(self.load)

    @property
    def key(self) -> str:
        """The cache key: what must match for the decision to hold."""
        return decision_key(
            self.hardware, self.torch, self.model, self.weights_sha256, self.device, self.threads
        )

    @property
    def best_s(self) -> dict[str, float]:
        """Each candidate's fastest run, in seconds."""
        return {name: min(runs) for name, runs in self.seconds.items()}

    @classmethod
    def from_dict(cls, d: Any) -> Decision | None:
        """A decision read back from the cache; None for an entry that does not make one."""
        try:
            decision = cls(**{f.name: d[f.name] for f in fields(cls)})
            ok = (
                decision.chosen in DTYPES
                and isinstance(decision.load, int | float | None)
                and all(isinstance(x, int | float) for runs in decision.seconds.values() for x in runs)
            )
        except (KeyError, TypeError, AttributeError):
            return None
        return decision if ok else None


def load_average() -> float | None:
    """The 1-minute load average, where the system has one."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def machine_busy(load: float | None) -> bool:
    """More runnable work than cores: timings then say more about the crowd than the dtype."""
    return load is not None and load > (cpu_info().cores or 1)


def decision_key(hardware: str, torch_version: str, model: str, sha: str, device: str, threads: int) -> str:
    """One line naming a machine, torch, a model and how it runs."""
    return f"{hardware} | torch {torch_version} | {model} {sha[:16]} | {device} | {threads} threads"


def current_key(teacher: Teacher, device: torch.device) -> str:
    """The key ``teacher`` on ``device`` has here, now (the torch version and threads of this process)."""
    return decision_key(
        hardware_name(device),
        str(torch.__version__),
        teacher.name,
        teacher.weights_sha256,
        device.type,
        torch.get_num_threads(),
    )


def probe_clip(seconds: float = 3.0) -> np.ndarray:
    """A fixed voiced sound (16 kHz float32), the same on every machine and needing no file.

    A harmonic source gliding in pitch, gated into syllables: Whisper decodes it to the same
    short text run after run, so a dtype that changes the decoding shows.
    """
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(110 + 25 * np.sin(2 * np.pi * 1.3 * t)) / SAMPLE_RATE
    source = sum(np.sin(k * phase) / k for k in range(1, 30))
    x = source * np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def _encode_timed(model, mels: torch.Tensor, precision: str) -> tuple[float, torch.Tensor]:
    """Seconds for one encoder pass over ``mels`` ``(B, n_mels, 2T)`` in ``precision``, and its output."""
    dtype = DTYPES[precision]
    cast = torch.autocast(mels.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    _sync(mels.device)
    start = time.perf_counter()
    with cast:
        features = encode_mels(model, mels)
    _sync(mels.device)
    return time.perf_counter() - start, features.float()


@torch.no_grad()
def _greedy_tokens(model, features: torch.Tensor) -> list[int]:
    """Up to ``PROBE_TOKENS`` greedy tokens from the first clip's features ``(B, T, d)``, in English."""
    from whisper.tokenizer import get_tokenizer

    tok = get_tokenizer(
        model.is_multilingual, num_languages=model.num_languages, language="en", task="transcribe"
    )
    tokens = list(tok.sot_sequence_including_notimestamps)
    start = len(tokens)
    for _ in range(PROBE_TOKENS):
        logits = model.logits(torch.tensor([tokens], device=features.device), features[:1])
        nxt = int(logits[0, -1].argmax())
        if nxt == tok.eot:
            break
        tokens.append(nxt)
    return tokens[start:]


def choose(seconds: dict[str, list[float]], agrees: dict[str, bool]) -> str:
    """The fastest agreeing candidate; another than float32 only when it wins by ``MARGIN``."""
    best = {name: min(runs) for name, runs in seconds.items()}
    faster = [n for n in best if n != "fp32" and agrees[n] and best[n] < best["fp32"] * (1 - MARGIN)]
    return min(faster, key=best.__getitem__, default="fp32")


def _warm_up(model, mels: torch.Tensor, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Each candidate's output from a first, untimed run; a lower precision that fails is dropped."""
    features = {}
    for name in names:
        try:
            features[name] = _encode_timed(model, mels, name)[1]
        except RuntimeError as e:  # an autocast kernel this build or device lacks
            if name == "fp32":
                raise
            log.warning("precision %s cannot run the encoder here (%s): not a candidate", name, e)
    return features


def _time_candidates(model, mels: torch.Tensor, names: tuple[str, ...], reps: int):
    """Each candidate's timed runs (warm-up first, then interleaved) and its output."""
    features = _warm_up(model, mels, names)
    seconds: dict[str, list[float]] = {name: [] for name in features}
    for _ in range(reps):  # interleaved: a machine that gets busier slows every candidate alike
        for name in seconds:
            seconds[name].append(round(_encode_timed(model, mels, name)[0], 4))
    return seconds, features


def probe(
    teacher: Teacher, device: torch.device | None = None, clip: np.ndarray | None = None, reps: int = REPS
) -> Decision:
    """Time the teacher's encoder in each candidate precision here and choose one (nothing cached).

    Args:
        teacher: Whose encoder is timed, on the device its weights are on.
        device: Where it runs (default: the model's device).
        clip: The 16 kHz clip to time and to compare decodings on (default ``probe_clip``).
        reps: Timed runs per candidate after the warm-up.
    """
    model = teacher.model.eval()
    device = device or next(model.parameters()).device
    load = load_average()
    clip = probe_clip() if clip is None else clip
    window = LabelOptions().windows.window_for(len(clip) / SAMPLE_RATE)
    batch = DEFAULT_BATCH_SIZE if device.type == "cuda" else 1  # a GPU idles on one clip
    mels = log_mel_batch([clip] * batch, window, model.dims.n_mels).to(device)
    seconds, features = _time_candidates(model, mels, candidates(device), reps)
    names = tuple(seconds)  # those that ran
    reference = features["fp32"]
    rel_diff = {n: round(float((features[n] - reference).norm() / reference.norm()), 5) for n in names}
    ref_tokens = _greedy_tokens(model, reference) if len(names) > 1 else []
    agrees = {
        n: n == "fp32" or (rel_diff[n] <= MAX_REL_DIFF and _greedy_tokens(model, features[n]) == ref_tokens)
        for n in names
    }
    return Decision(
        chosen=choose(seconds, agrees),
        hardware=hardware_name(device),
        torch=str(torch.__version__),
        model=teacher.name,
        weights_sha256=teacher.weights_sha256,
        device=device.type,
        threads=torch.get_num_threads(),
        window_s=window,
        batch=batch,
        seconds=seconds,
        rel_diff=rel_diff,
        agrees=agrees,
        flags=cpu_info().speed_flags,
        measured=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        load=load,
    )


def cache_path() -> Path:
    """The cache file: ``$ASR_DISTILL_PRECISION_CACHE``, else ``precision.json`` in the user's cache.

    That is ``$ASR_DISTILL_CACHE`` (where converted models go) when set, else
    ``$XDG_CACHE_HOME/asr_distill``, else ``~/.cache/asr_distill``.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    if os.environ.get("ASR_DISTILL_CACHE"):
        return Path(os.environ["ASR_DISTILL_CACHE"]) / "precision.json"
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "asr_distill" / "precision.json"


def load_decisions(path: Path | None = None) -> tuple[dict[str, Decision], str | None]:
    """The cached decisions by key, and why the file cannot be used or replaced (None when it can).

    A missing file is an empty cache. A file that is not this toolkit's cache is left alone.
    """
    path = cache_path() if path is None else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return {}, f"{path} is not a precision cache this toolkit wrote ({e}); delete it to cache again"
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        return {}, f"{path} is not a precision cache this toolkit wrote; delete it to cache again"
    entries = data.get("decisions") if data.get("version") == CACHE_VERSION else {}
    decisions = [Decision.from_dict(d) for d in (entries.values() if isinstance(entries, dict) else [])]
    return {d.key: d for d in decisions if d is not None}, None


def _write(path: Path, decisions: dict[str, Decision]) -> None:
    doc = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "decisions": {key: asdict(d) for key, d in sorted(decisions.items())},
    }
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")


def _wait_for_lock(path: Path):
    """The cache's lock, once no other process holds it; None when it cannot be had (then no write)."""
    lock = path.with_name(path.name + ".lock")
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return acquire_lock(lock, path, "it is timing the encoder; this process waits for it")
        except OutputNotWritableError as e:
            log.warning("precision cache not writable (%s): timing for this process only", e)
            return None
        except OutputLockedError as e:
            if time.monotonic() > deadline:
                log.warning("%s; timing for this process only", e)
                return None
            time.sleep(0.2)


def _probe_and_store(teacher: Teacher, device: torch.device, path: Path, again: bool = False) -> Decision:
    """Probe under the cache's lock, unless (``again`` False) the lock's last holder cached this key."""
    lock = _wait_for_lock(path)
    try:
        decisions, problem = load_decisions(path)
        key = current_key(teacher, device)
        if key in decisions and not again and not _stale(decisions[key]):
            return decisions[key]
        log.info(
            "timing %s's encoder in %s once for this machine", teacher.name, "/".join(candidates(device))
        )
        decision = probe(teacher, device)
        if problem:
            log.warning("%s: the precision decision holds for this process only", problem)
        elif lock is not None:
            try:
                _write(path, {**decisions, key: decision})
            except OSError as e:
                log.warning("could not cache the precision decision in %s: %s", path, e)
        log.info("precision auto -> %s (%s)", decision.chosen, decision.best_s)
        return decision
    finally:
        if lock is not None:
            release_lock(lock)


def _stale(decision: Decision) -> bool:
    """Timed on a crowded CPU, and this one is quiet now: worth timing again."""
    return decision.busy and not machine_busy(load_average())


def decide(teacher: Teacher, device: torch.device | None = None) -> str:
    """The precision ``auto`` means for ``teacher`` here: remembered, cached on disk, or timed now."""
    device = device or next(teacher.model.parameters()).device
    names = candidates(device)
    if len(names) == 1:
        return names[0]
    key = current_key(teacher, device)
    if key not in _DECIDED:
        path = cache_path()
        found = load_decisions(path)[0].get(key)
        if found is None and device.type == "cpu" and machine_busy(load := load_average()):
            log.info("CPU crowded (load %s): float32 until %s's encoder can be timed", load, teacher.name)
            _DECIDED[key] = "fp32"  # timing now would measure the crowd, slowly: the reference instead
        else:
            if found is None or _stale(found):
                found = _probe_and_store(teacher, device, path)
            _DECIDED[key] = found.chosen
    return _DECIDED[key]


def measure_again(teacher: Teacher, device: torch.device | None = None) -> Decision:
    """Time ``teacher`` here now and replace its cached decision (``asr-distill doctor --probe``)."""
    device = device or next(teacher.model.parameters()).device
    decision = _probe_and_store(teacher, device, cache_path(), again=True)
    _DECIDED[current_key(teacher, device)] = decision.chosen
    return decision


def time_threads(teacher: Teacher, precision: str, counts: list[int], reps: int = REPS) -> dict[int, float]:
    """The fastest of ``reps`` encoder runs on ``probe_clip`` at each torch thread count (CPU).

    For ``doctor``: whether more threads help here depends on what else runs, so this is
    shown, not cached.
    """
    model = teacher.model.eval()
    clip = probe_clip()
    mels = log_mel_batch(
        [clip], LabelOptions().windows.window_for(len(clip) / SAMPLE_RATE), model.dims.n_mels
    )
    before, out = torch.get_num_threads(), {}
    try:
        for n in counts:
            torch.set_num_threads(n)
            _encode_timed(model, mels, precision)  # warm-up at this count
            out[n] = round(min(_encode_timed(model, mels, precision)[0] for _ in range(reps)), 4)
    finally:
        torch.set_num_threads(before)
    return out


def auto_dtype(teacher: Teacher, device: torch.device | None = None) -> torch.dtype | None:
    """The encoder's autocast dtype for ``auto`` (None: float32); see ``decide``."""
    return DTYPES[decide(teacher, device)]


def machine() -> dict[str, Any]:
    """What decides speed here, for ``doctor`` and benchmark results."""
    info = cpu_info()
    return {
        "cpu_model": info.model,
        "cpu_flags": list(info.speed_flags),
        "cpu_bf16_units": cpu_has_bf16(),
        "cores": info.cores,
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "platform": platform.platform(),
    }
