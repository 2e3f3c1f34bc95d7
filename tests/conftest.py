"""Shared fixtures: the committed AN4 clips, the packaged teachers, an isolated model cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "an4" / "manifest.jsonl"
SHARED_AN4 = Path(__file__).resolve().parents[2] / "shared" / "data" / "an4"


@pytest.fixture(scope="session")
def an4_fixture() -> Path:
    """Eight real AN4 test clips (CMU licence in the same folder), with transcripts."""
    return FIXTURE


@pytest.fixture(scope="session")
def shared_an4() -> Path:
    """The full AN4 dev data, when this checkout sits next to it; else the test skips."""
    if not (SHARED_AN4 / "test.jsonl").is_file():
        pytest.skip(f"AN4 dev data not found at {SHARED_AN4} (only present next to the project's checkout)")
    return SHARED_AN4


@pytest.fixture(scope="session")
def tiny_teacher():
    from asr_distill import load_teacher

    return load_teacher("tiny.en")


@pytest.fixture(scope="session")
def fixture_labels(tmp_path_factory, an4_fixture, tiny_teacher) -> Path:
    """The committed AN4 clips labeled by tiny.en once per session: the label file's path.

    The quality tests (filter, confidence, review) all read this one file.
    """
    from asr_distill.label import LabelRun, label_to_file

    out = tmp_path_factory.getbasetemp() / "quality_fixture_labels.jsonl"
    if not out.is_file():
        label_to_file(an4_fixture, out, LabelRun(tiny_teacher, batch_size=8))
    return out


def write_manifest(path: Path, lines: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(d) + "\n" for d in lines))
    return path


def fixture_lines(copies: int = 1) -> list[dict]:
    """The fixture manifest with absolute paths, repeated ``copies`` times under distinct ids."""
    base = [json.loads(x) for x in FIXTURE.read_text().splitlines()]
    out = []
    for c in range(copies):
        for d in base:
            d = dict(d, audio_filepath=str(FIXTURE.parent / d["audio_filepath"]))
            d["id"] = f"c{c}-{Path(d['audio_filepath']).stem}"
            out.append(d)
    return out


@pytest.fixture(autouse=True, scope="session")
def _cache_env():
    # converted models are cached once per machine; tests share the user's cache if set
    os.environ.setdefault("ASR_DISTILL_CACHE", str(Path.home() / ".cache" / "asr_distill"))
