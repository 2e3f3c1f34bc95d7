"""``--precision auto``: chosen by timing on this machine, cached per CPU, torch and model.

Every test points the cache at its own folder (``ASR_DISTILL_PRECISION_CACHE``), so the
user's cache is never read or written here.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict

import pytest
import torch

from asr_distill.teacher import precision
from asr_distill.teacher.resolve import Teacher

FAKE = Teacher("fake", None, "ab" * 32, "test")  # decide() reads only its name and sha
CPU = torch.device("cpu")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache file of this test's own, and a process that has decided nothing yet."""
    path = tmp_path / "precision.json"
    monkeypatch.setenv(precision.CACHE_ENV, str(path))
    monkeypatch.setattr(precision, "_DECIDED", {})
    return path


@pytest.fixture
def fake_probe(monkeypatch):
    """``probe`` replaced by one that answers bf16 at once and counts its calls; the CPU reads as quiet."""
    calls = []

    def probe(teacher, device=None, clip=None, reps=precision.REPS):
        calls.append(teacher.name)
        return _decision("bf16", teacher, load=calls_load[0])

    calls_load = [0.5]
    monkeypatch.setattr(precision, "probe", probe)
    monkeypatch.setattr(precision, "load_average", lambda: 0.1)  # a quiet machine, unless a test says
    monkeypatch.setattr(precision, "candidates", lambda device: ("fp32", "bf16"))
    probe.calls, probe.load = calls, calls_load
    return probe


def _decision(chosen: str, teacher: Teacher, load: float | None = 0.5) -> precision.Decision:
    return precision.Decision(
        chosen=chosen,
        hardware=precision.hardware_name(CPU),
        torch=str(torch.__version__),
        model=teacher.name,
        weights_sha256=teacher.weights_sha256,
        device="cpu",
        threads=torch.get_num_threads(),
        window_s=20.0,
        batch=1,
        seconds={"fp32": [0.2, 0.21], "bf16": [0.1, 0.12]},
        rel_diff={"fp32": 0.0, "bf16": 0.01},
        agrees={"fp32": True, "bf16": True},
        flags=("amx_bf16",),
        measured="2026-01-01T00:00:00+00:00",
        load=load,
    )


def _forget(monkeypatch):
    """As a new process would start: nothing decided in memory."""
    monkeypatch.setattr(precision, "_DECIDED", {})


def test_the_cache_is_reused_and_a_torch_upgrade_misses_it(cache, fake_probe, monkeypatch):
    assert precision.decide(FAKE, CPU) == "bf16" and fake_probe.calls == ["fake"]
    entry = json.loads(cache.read_text())["decisions"][precision.current_key(FAKE, CPU)]
    assert entry["chosen"] == "bf16" and entry["seconds"]["fp32"] == [0.2, 0.21]

    cache.unlink()  # the same process asks again: its memory answers, no file needed
    assert precision.decide(FAKE, CPU) == "bf16" and len(fake_probe.calls) == 1
    precision._write(cache, {precision.current_key(FAKE, CPU): _decision("bf16", FAKE)})

    _forget(monkeypatch)  # a new process reads the file instead of timing
    assert precision.decide(FAKE, CPU) == "bf16" and len(fake_probe.calls) == 1

    _forget(monkeypatch)
    monkeypatch.setattr(torch, "__version__", "99.0.0")  # an upgraded torch: timed again
    assert precision.decide(FAKE, CPU) == "bf16" and len(fake_probe.calls) == 2
    assert len(json.loads(cache.read_text())["decisions"]) == 2  # both versions kept

    _forget(monkeypatch)  # another model, or another thread count, is its own entry
    monkeypatch.setattr(torch, "get_num_threads", lambda: 7)
    precision.decide(FAKE, CPU)
    assert len(fake_probe.calls) == 3


def test_a_crowded_cpu_is_not_timed_and_its_timings_are_redone_once_quiet(cache, fake_probe, monkeypatch):
    cores = precision.cpu_info().cores or 1
    fake_probe.load[0] = cores + 5.0
    monkeypatch.setattr(precision, "load_average", lambda: cores + 5.0)
    assert precision.decide(FAKE, CPU) == "fp32"  # the reference, untimed, and nothing cached
    assert fake_probe.calls == [] and not cache.exists()
    assert precision.measure_again(FAKE, CPU).busy  # doctor --probe times anyway
    _forget(monkeypatch)
    assert precision.decide(FAKE, CPU) == "bf16"  # still crowded: the crowded timing stands
    assert len(fake_probe.calls) == 1
    fake_probe.load[0] = 0.1
    monkeypatch.setattr(precision, "load_average", lambda: 0.1)
    _forget(monkeypatch)
    precision.decide(FAKE, CPU)  # quiet now: timed again, and that stands
    _forget(monkeypatch)
    precision.decide(FAKE, CPU)
    assert len(fake_probe.calls) == 2
    (entry,) = json.loads(cache.read_text())["decisions"].values()
    assert entry["load"] == 0.1


def test_a_foreign_or_broken_cache_file_is_left_alone(cache, fake_probe):
    cache.write_text("my notes, not a cache\n")
    assert precision.decide(FAKE, CPU) == "bf16"
    assert cache.read_text() == "my notes, not a cache\n"
    decisions, problem = precision.load_decisions(cache)
    assert decisions == {} and "not a precision cache" in problem


def test_entries_that_do_not_make_a_decision_are_ignored(cache, fake_probe):
    good = asdict(_decision("bf16", FAKE))
    doc = {
        "format": precision.CACHE_FORMAT,
        "version": precision.CACHE_VERSION,
        "decisions": {"a": dict(good, chosen="int3"), "b": dict(good, seconds={"fp32": ["x"]}), "c": 5},
    }
    cache.write_text(json.dumps(doc))
    assert precision.load_decisions(cache) == ({}, None)
    precision.decide(FAKE, CPU)
    assert len(fake_probe.calls) == 1  # timed, and the file rewritten with the good entry
    assert list(json.loads(cache.read_text())["decisions"]) == [precision.current_key(FAKE, CPU)]


@pytest.mark.parametrize(
    ("fp32", "bf16", "bf16_agrees", "chosen"),
    [
        (1.0, 0.5, True, "bf16"),  # clearly faster
        (1.0, 1.3, True, "fp32"),  # slower (an AVX512-BF16 CPU without AMX)
        (1.0, 0.99, True, "fp32"),  # within the margin: float32, the reference, stays
        (1.0, 0.5, False, "fp32"),  # faster but decodes differently
    ],
)
def test_choose_keeps_the_fastest_agreeing_precision(fp32, bf16, bf16_agrees, chosen):
    seconds = {"fp32": [fp32 + 0.2, fp32], "bf16": [bf16, bf16 + 0.1]}
    assert precision.choose(seconds, {"fp32": True, "bf16": bf16_agrees}) == chosen


def test_flags_only_pick_the_candidates(monkeypatch):
    info = precision.CpuInfo("some cpu", frozenset({"avx2"}), 2)
    monkeypatch.setattr(precision, "cpu_info", lambda: info)
    assert precision.candidates(CPU) == ("fp32",) and precision.decide(FAKE, CPU) == "fp32"  # nothing to time
    monkeypatch.setattr(precision, "cpu_info", lambda: precision.CpuInfo("x", frozenset({"amx_bf16"}), 2))
    assert precision.candidates(CPU) == ("fp32", "bf16")
    assert precision.candidates(torch.device("cuda")) == ("fp32", "fp16")


def test_encoder_dtype_auto_follows_the_decision(monkeypatch):
    from asr_distill.teacher.backends import encoder_dtype

    monkeypatch.setattr(precision, "decide", lambda teacher, device=None: "bf16")
    assert encoder_dtype("auto", CPU, FAKE) is torch.bfloat16
    monkeypatch.setattr(precision, "decide", lambda teacher, device=None: "fp32")
    assert encoder_dtype("auto", CPU, FAKE) is None
    assert encoder_dtype("bf16", CPU, FAKE) is torch.bfloat16  # a precision asked for is not timed
    assert encoder_dtype("auto", CPU) is None  # no model to time: float32


def test_doctor_prints_the_machine_and_the_cached_timings(cache):
    from asr_distill.testing.cli import run_cli

    precision._write(cache, {"k": _decision("bf16", FAKE)})
    rc, out, _ = run_cli("doctor")
    assert rc == 0 and precision.cpu_info().model in out and str(torch.__version__) in out
    assert "fake" in out and "auto -> bf16" in out and "fp32 0.200 s" in out and "bf16 0.100 s" in out
    rc, out, _ = run_cli("doctor", "--json")
    doc = json.loads(out)
    assert doc["cache"] == str(cache) and doc["machine"]["cores"] == precision.cpu_info().cores
    (entry,) = doc["decisions"].values()
    assert entry["chosen"] == "bf16" and entry["seconds"]["bf16"] == [0.1, 0.12]


def test_a_precision_that_cannot_run_here_is_dropped(tiny_teacher, monkeypatch):
    real = precision._encode_timed

    def encode(model, mels, name):
        if name == "bf16":
            raise RuntimeError("no bf16 kernel for this op")
        return real(model, mels, name)

    monkeypatch.setattr(precision, "candidates", lambda device: ("fp32", "bf16"))
    monkeypatch.setattr(precision, "_encode_timed", encode)
    d = precision.probe(tiny_teacher, reps=1)
    assert d.chosen == "fp32" and list(d.seconds) == ["fp32"] and d.agrees == {"fp32": True}


def _an4_clip(an4_fixture):
    from asr_distill.audio import load_audio

    return load_audio(an4_fixture.parent / "audio" / "an406-fcaw-b.flac")


@pytest.mark.slow
def test_probe_times_the_candidates_and_bf16_agrees_on_speech(an4_fixture, tiny_teacher, monkeypatch):
    """On a real clip bf16's encoder output stays close and decodes the same; a strict check refuses it."""
    monkeypatch.setattr(precision, "candidates", lambda device: ("fp32", "bf16"))  # any x86 runs bf16
    d = precision.probe(tiny_teacher, clip=_an4_clip(an4_fixture), reps=2)
    assert set(d.seconds) == {"fp32", "bf16"} and all(len(r) == 2 and min(r) > 0 for r in d.seconds.values())
    assert d.window_s == 20.0 and d.batch == 1 and d.key == precision.current_key(tiny_teacher, CPU)
    assert 0 < d.rel_diff["bf16"] < precision.MAX_REL_DIFF and d.agrees == {"fp32": True, "bf16": True}
    monkeypatch.setattr(precision, "MAX_REL_DIFF", 1e-6)
    strict = precision.probe(tiny_teacher, reps=1)
    assert strict.agrees["bf16"] is False and strict.chosen == "fp32"


def _direct_seconds(model, mels, names, reps=3) -> dict[str, float]:
    """The labeler's work, timed plainly: the whole batch encoded in each dtype, interleaved."""
    best = dict.fromkeys(names, float("inf"))
    for name in names:
        precision._encode_timed(model, mels, name)  # warm-up
    for _ in range(reps):
        for name in names:
            best[name] = min(best[name], precision._encode_timed(model, mels, name)[0])
    return best


@pytest.mark.slow
def test_the_probe_picks_the_faster_precision_here(an4_fixture, tiny_teacher, cache):
    """Benchmark-style: what the probe chose must not be slower than the other dtype on a labeling batch."""
    from asr_distill.audio import load_audio
    from asr_distill.features import log_mel_batch
    from asr_distill.manifest import read_manifest

    names = precision.candidates(CPU)
    if names == ("fp32",):
        assert precision.decide(tiny_teacher, CPU) == "fp32"
        pytest.skip("this CPU has no bf16 units: float32 is the only candidate, nothing to compare")
    if precision.machine_busy(precision.load_average()):
        pytest.skip(f"CPU crowded (load {precision.load_average()}): timings would measure the crowd")
    chosen = precision.decide(tiny_teacher, CPU)
    clips = [load_audio(u.audio_filepath) for u in read_manifest(an4_fixture)]
    mels = log_mel_batch(clips, 20.0, tiny_teacher.model.dims.n_mels)  # a batch of 8, the labeler's default
    start = time.perf_counter()
    direct = _direct_seconds(tiny_teacher.model.eval(), mels, names)
    print(f"probe chose {chosen}; direct batch-8 timing {direct} ({time.perf_counter() - start:.1f} s)")
    assert direct[chosen] <= min(direct.values()) * 1.25, (chosen, direct)
