"""The hostile-input corpus: every case in ``bad_inputs.HOSTILE_CASES`` gets its exact outcome.

The outcome is a skip with its reason and a message naming the file, a refusal with one line
naming the path, or the data read as it should be; nothing else is lost or run.

Cases marked ``cli_pending`` there still need their command wired to the library call and are
checked at the library level. The others run the real ``asr-distill`` command
(``asr_distill.cli.main``): exit code 2, one line naming the file (and edit, key or holder), no
traceback, nothing written that should not be, and every input byte for byte as it was.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from bad_inputs import (
    HOSTILE_CASES,
    HOSTILE_NAMES,
    LABEL_HOSTILE_NAMES,
    crafted_pickle,
    make_bad_inputs,
    manifest_bytes,
    speechlike,
)
from conftest import fixture_lines

from asr_distill.audio import SKIP_REASONS, iter_audio, iter_segments
from asr_distill.jsonl import (
    OutputLockedError,
    ResumableJsonlWriter,
    UnsafeOutputError,
    lock_holder,
    lock_path_for,
)
from asr_distill.manifest import read_manifest
from asr_distill.outputs import guard_output
from asr_distill.quality.filter import read_pseudo_labels
from asr_distill.records import Skip, Utterance
from asr_distill.safe_load import CheckpointError, UnsafeCheckpointError, load_checkpoint
from asr_distill.testing.cli import BIG_REFERENCE_BYTES, big_text, hold_output, logged, run_cli, snapshot
from asr_distill.testing.labels import make_label, write_labels

ROOT = Path(__file__).resolve().parent.parent


def _ids(records) -> list[str]:
    return [r.id for r in records]


def _manifest(tmp_path: Path, data: bytes, name: str = "m.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _plain(tmp_path: Path) -> tuple[list[dict], list[str]]:
    lines = fixture_lines()[:3]
    return lines, _ids(read_manifest(_manifest(tmp_path, manifest_bytes(lines), "plain.jsonl")))


# --- the command line --------------------------------------------------------------------


def _cli_refused(argv, words, *, unchanged=(), absent=()) -> str:
    """The command exits 2 with one ``error:`` line holding ``words``; returns the line.

    ``unchanged`` is kept byte for byte (nothing added under a folder either), ``absent`` is
    never created.
    """
    before = snapshot(*unchanged)
    rc, out, err = run_cli(*argv)
    line = err.strip()
    assert rc == 2 and line.startswith("error: ") and "\n" not in line and "Traceback" not in err, (rc, err)
    assert all(w in line for w in words), (words, line)
    assert snapshot(*unchanged) == before
    assert not [a for a in absent if Path(a).exists()]
    return line


def _labels(tmp_path: Path, name: str = "labels.jsonl", texts=("enter seven",) * 4) -> Path:
    labels = [make_label(t, id=f"u{i}", ref_text=t) for i, t in enumerate(texts)]
    return write_labels(tmp_path / name, labels)


FILTER_ARGS = ("--score", "avg_logprob", "--threshold", "-5", "--normaliser", "none")


def _filtered(tmp_path: Path, texts=("enter seven",) * 4) -> Path:
    """Four teacher labels through ``asr-distill filter`` (all kept): a review's input."""
    out = tmp_path / "filtered"
    rc, _, err = run_cli("filter", _labels(tmp_path, texts=texts), "--out", out, *FILTER_ARGS)
    assert rc == 0, err
    return out


# --- reading -----------------------------------------------------------------------------


def _bom(tmp_path: Path) -> None:
    lines, expected = _plain(tmp_path)
    got = list(read_manifest(_manifest(tmp_path, b"\xef\xbb\xbf" + manifest_bytes(lines))))
    assert _ids(got) == expected and not any(isinstance(r, Skip) for r in got)


def _gzip_as(name: str) -> Callable[[Path], None]:
    def case(tmp_path: Path) -> None:
        lines, expected = _plain(tmp_path)
        got = list(read_manifest(_manifest(tmp_path, gzip.compress(manifest_bytes(lines)), name)))
        assert _ids(got) == expected and not any(isinstance(r, Skip) for r in got)

    return case


def _latin1(tmp_path: Path) -> None:
    lines, expected = _plain(tmp_path)
    data = manifest_bytes(lines).split(b"\n")
    data[1] = data[1].replace(b'"text": "', b'"text": "caf\xe9 ')  # one Latin-1 byte on line 2
    path = _manifest(tmp_path, b"\n".join(data))
    got = list(read_manifest(path))
    assert _ids(got) == [expected[0], "m.jsonl:line2", expected[2]]
    assert got[1].reason == "bad_manifest_line"
    assert f"{path} line 2: not UTF-8 text (byte 0xe9" in got[1].message


def _utf16(tmp_path: Path) -> None:
    lines, _ = _plain(tmp_path)
    path = _manifest(tmp_path, manifest_bytes(lines).decode("utf-8").encode("utf-16"))
    (skip,) = read_manifest(path)
    assert skip.reason == "bad_manifest_line" and "UTF-16" in skip.message and str(path) in skip.message


def _truncated_gzip(tmp_path: Path) -> None:
    lines = fixture_lines()
    packed = gzip.compress(manifest_bytes(lines))
    got = list(read_manifest(_manifest(tmp_path, packed[: len(packed) * 2 // 3], "m.jsonl.gz")))
    assert isinstance(got[-1], Skip) and "gzip stream breaks off" in got[-1].message
    good = [r for r in got if not isinstance(r, Skip)]
    assert 0 < len(good) < len(lines)
    assert _ids(good) == [d["id"] for d in lines[: len(good)]]


# --- audio -------------------------------------------------------------------------------


def _audio_case(name: str, reason: str | None, words: str = "") -> Callable[[Path], None]:
    def case(tmp_path: Path) -> None:
        (bad,) = (c for c in make_bad_inputs(tmp_path, include_long=False) if c.name == name)
        out = list(iter_segments(Utterance(id=name, audio_filepath=str(bad.path), duration=bad.duration)))
        if reason is None:
            (kept,) = out
            assert not isinstance(kept, Skip) and len(kept[1]) == bad.samples
            assert np.abs(kept[1]).max() > 0.1  # the PCM after the header, not silence
            return
        (skip,) = out
        assert isinstance(skip, Skip) and skip.reason == reason and reason in SKIP_REASONS
        assert str(bad.path) in skip.message and words in skip.message

    return case


def _isolated(tmp_path: Path) -> None:
    """good, x1e20, good: the bad clip is a recorded skip, both good clips come through."""
    rng = np.random.default_rng(0)
    paths = []
    for i, scale in enumerate((1.0, 1e20, 1.0)):
        paths.append(tmp_path / f"{i}.wav")
        sf.write(paths[-1], speechlike(1.0, 16000, rng) * np.float32(scale), 16000, subtype="FLOAT")
    utts = [Utterance(id=str(i), audio_filepath=str(p), duration=1.0) for i, p in enumerate(paths)]
    out = list(iter_audio(utts))
    assert [isinstance(o, Skip) for o in out] == [False, True, False]
    assert out[1].reason == "out_of_range"
    assert all(np.isfinite(o[1]).all() and np.abs(o[1]).max() < 1.0 for o in (out[0], out[2]))


# --- code in a checkpoint ----------------------------------------------------------------


def _pickle(legacy: bool) -> Callable[[Path], None]:
    def case(tmp_path: Path) -> None:
        marker = tmp_path / "payload_ran"
        path = crafted_pickle(tmp_path / "last.ckpt", marker, legacy=legacy)
        with pytest.raises(UnsafeCheckpointError) as info:
            load_checkpoint(path)
        assert not marker.exists()
        message = str(info.value)
        assert "\n" not in message and str(path) in message and "mkdir" in message
        _checkpoint_refused_by_cli(tmp_path, path, ["holds Python objects", "mkdir", "refused"])
        assert not marker.exists()

    return case


def _checkpoint_refused_by_cli(tmp_path: Path, path: Path, words: list[str]) -> None:
    """``export CKPT`` and ``evaluate NAME=CKPT``: exit 2, one line naming it, nothing written."""
    manifest = _manifest(tmp_path, manifest_bytes(fixture_lines()[:1]))
    pt, ev = tmp_path / "student.pt", tmp_path / "eval"
    _cli_refused(
        ["export", path, "--out", pt, "--ct2", tmp_path / "ct2"],
        [str(path), *words],
        unchanged=[tmp_path],
        absent=[pt, ev, tmp_path / "ct2"],
    )
    _cli_refused(
        ["evaluate", f"student={path}", "--manifest", manifest, "--out", ev],
        [str(path), *words],
        unchanged=[tmp_path],
        absent=[ev],
    )


def _truncated_checkpoint(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:700])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert not isinstance(info.value, UnsafeCheckpointError)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    _checkpoint_refused_by_cli(tmp_path, path, ["not a readable torch checkpoint"])


# --- outputs -----------------------------------------------------------------------------


def _refused(out: Path, words: str, *, kind: str = "labels", inputs=(), force: bool = False) -> None:
    before = {p: p.read_bytes() for p in [out, *map(Path, inputs)] if p.is_file() and not p.is_symlink()}
    lock = lock_path_for(out, folder=kind.endswith("_dir"))
    had_lock = lock.exists()
    with pytest.raises(UnsafeOutputError) as info:
        with guard_output(out, inputs=inputs, kind=kind, force=force):
            raise AssertionError("the block must not run")
    message = str(info.value)
    assert "\n" not in message and str(out) in message and words in message, message
    assert {p: p.read_bytes() for p in before} == before  # nothing lost
    assert lock.exists() == had_lock  # refused before the lock file was made


def _output_is_input(tmp_path: Path) -> None:
    m = _manifest(tmp_path, manifest_bytes(fixture_lines()[:2]))
    _refused(m, "is the input", inputs=[m])
    _refused(m, "is the input", inputs=[m], force=True)


def _hard_link(tmp_path: Path) -> None:
    m = _manifest(tmp_path, manifest_bytes(fixture_lines()[:2]))
    os.link(m, tmp_path / "out.jsonl")
    _refused(tmp_path / "out.jsonl", "is the input", inputs=[m])


def _symlink_file(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "labels.jsonl"
    target.parent.mkdir()
    target.write_text("")
    (tmp_path / "link.jsonl").symlink_to(target)
    _refused(tmp_path / "link.jsonl", "symbolic link")
    _refused(tmp_path / "link.jsonl", "symbolic link", force=True)


def _symlink_to_input(tmp_path: Path) -> None:
    m = _manifest(tmp_path, manifest_bytes(fixture_lines()[:2]))
    (tmp_path / "link.jsonl").symlink_to(m)
    _refused(tmp_path / "link.jsonl", "is the input", inputs=[m])


def _unrelated_file(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    _refused(notes, "not a labels file")


def _unrelated_forced(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with guard_output(notes, kind="labels", force=True) as out:
        assert out == notes and lock_holder(lock_path_for(notes, folder=False)) is not None


def _manifest_as_labels(tmp_path: Path) -> None:
    other = _manifest(tmp_path, manifest_bytes(fixture_lines()[:2]), "train.jsonl")
    _refused(other, "line 1 is not a teacher label")


def _dir_unrelated(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("\\section{}")
    _refused(home, "thesis.tex: this step does not write it", kind="filter_dir")
    _cli_refused(
        ["filter", _labels(tmp_path), "--out", home, *FILTER_ARGS],
        [str(home), "thesis.tex: this step does not write it", "--force"],
        unchanged=[home],
    )


def _dir_is_input_folder(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    kept = d / "kept.jsonl"
    kept.write_text("")
    _refused(d, "holds the input", kind="review_dir", inputs=[kept, tmp_path / "edits.json"])
    d = _filtered(tmp_path)
    edits = _edits(tmp_path, {"reviewer": "ada", "edits": [{"id": "u1", "decision": "reject", "text": ""}]})
    _cli_refused(
        ["review", "import", d / "kept.jsonl", edits, "--out", d],
        [str(d), "holds the input", "kept.jsonl"],
        unchanged=[d, edits],
    )
    _cli_refused(
        ["review", "import", d / "kept.jsonl", edits, "--out", d, "--force"],
        ["holds the input"],
        unchanged=[d, edits],
    )


def _dir_would_overwrite_input(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "kept.jsonl").write_text("")
    _refused(d, "would overwrite the input", kind="filter_dir", inputs=[d / "kept.jsonl"])
    labels = _labels(d, "kept.jsonl")  # teacher labels that happen to be called kept.jsonl
    for force in ((), ("--force",)):
        _cli_refused(
            ["filter", labels, "--out", d, *FILTER_ARGS, *force],
            [str(d), "would overwrite the input", str(labels)],
            unchanged=[d],
        )


def _dir_of_another_step(tmp_path: Path) -> None:
    d = tmp_path / "filter"
    with guard_output(d, kind="filter_dir"):
        pass
    _refused(d, "another step (filter_dir)", kind="evaluate_dir")
    manifest = _manifest(tmp_path, manifest_bytes(fixture_lines()[:1]))
    _cli_refused(
        ["evaluate", "tiny.en", "--manifest", manifest, "--out", d],  # refused before any decoding
        [str(d), "another step (filter_dir)"],
        unchanged=[d],
    )


def _dir_named_file_not_ours(tmp_path: Path) -> None:
    d = tmp_path / "filter"
    d.mkdir()
    (d / "kept.jsonl").write_text("a line someone wrote\n")
    _refused(d, "kept.jsonl: line 1 is not JSON", kind="filter_dir")
    _cli_refused(
        ["filter", _labels(tmp_path), "--out", d, *FILTER_ARGS],
        [str(d), "kept.jsonl: line 1 is not JSON"],
        unchanged=[d],
    )


def _resumable_writer_on_foreign_file(tmp_path: Path) -> None:
    notes = tmp_path / "notes.jsonl"
    text = '{"id": "a"}\nnot json\n{"id": "b"}\n'
    notes.write_text(text)
    with pytest.raises(UnsafeOutputError, match="line 2 is not a record"):
        with ResumableJsonlWriter(notes):
            pass
    assert notes.read_text() == text  # not cut at the foreign line


# --- locks -------------------------------------------------------------------------------


def _lock_held(tmp_path: Path) -> None:
    out = tmp_path / "filter"
    proc = hold_output(out, "filter_dir")
    try:
        with pytest.raises(OutputLockedError) as info:
            with guard_output(out, kind="filter_dir"):
                raise AssertionError("the block must not run")
        message = str(info.value)
        assert f"pid {proc.pid}: " in message and str(out) in message  # the command line may be cut short
        assert "being written by another process" in message and "\n" not in message
        line = _cli_refused(
            ["filter", _labels(tmp_path), "--out", out, *FILTER_ARGS],
            [f"pid {proc.pid}: ", str(out)],
            unchanged=[out],
        )
        assert not (out / "kept.jsonl").exists() and "being written by another process" in line
    finally:
        proc.kill()
        proc.wait()
    with guard_output(out, kind="filter_dir"):  # the kernel freed it with the process
        pass


def _lock_probe(tmp_path: Path) -> None:
    shard = tmp_path / "labels.part0of2.jsonl"
    lock = lock_path_for(shard, folder=False)
    assert lock_holder(lock) is None and not lock.exists()  # probing creates nothing
    proc = hold_output(shard, "labels")
    try:
        assert lock_holder(lock).startswith(f"pid {proc.pid}:")
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while lock_holder(lock) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock_holder(lock) is None


# --- review edits, the review sheet, more outputs (issue 12, at the CLI) ---------------------


def _edits(tmp_path: Path, payload, name: str = "edits.json") -> Path:
    """An edits file: ``payload`` as JSON, or as given when it is text or bytes."""
    path = tmp_path / name
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    else:
        path.write_text(payload if isinstance(payload, str) else json.dumps(payload), encoding="utf-8")
    return path


def _edit(text="enter eleven", decision="accept", id="u1") -> dict:
    return {"id": id, "decision": decision, "text": text}


def _import_refused(payload, words: list[str]) -> Callable[[Path], None]:
    """``review import`` of a malformed edits file: exit 2 naming the file and ``words``; no output."""

    def case(tmp_path: Path) -> None:
        d = _filtered(tmp_path)
        edits, out = _edits(tmp_path, payload), tmp_path / "reviewed"
        _cli_refused(
            ["review", "import", d / "kept.jsonl", edits, "--out", out],
            [str(edits), *words],
            unchanged=[d, edits],
            absent=[out],
        )

    return case


def _import(tmp_path: Path, payload, *extra) -> tuple[Path, Path, str]:
    """``review import`` that must succeed: (filtered folder, output folder, stdout)."""
    d = _filtered(tmp_path)
    out = tmp_path / "reviewed"
    edits = _edits(tmp_path, payload)
    rc, stdout, err = run_cli("review", "import", d / "kept.jsonl", edits, "--out", out, *extra)
    assert rc == 0 and "Traceback" not in err, err
    return d, out, stdout


def _audit(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "review_audit.jsonl").read_text(encoding="utf-8").splitlines()]


def _reviewer_escaped(tmp_path: Path) -> None:
    name = "ada\x1b[31m\nrm -rf\u202e"
    _, out, stdout = _import(tmp_path, {"reviewer": name, "edits": [_edit()]})
    assert "\x1b" not in stdout and "\u202e" not in stdout and "by ada\\x1b[31m\\nrm -rf\\u202e:" in stdout
    assert [a["reviewer"] for a in _audit(out)] == [name]  # stored as given, escaped only on the terminal


def _id_escaped(tmp_path: Path) -> None:
    _, out, stdout = _import(tmp_path, {"reviewer": "ada", "edits": [_edit(id="nope\x1b[2J")]})
    assert "\x1b" not in stdout and "are not in" in stdout and "nope\\x1b[2J" in stdout
    _cli_refused(
        [
            "review",
            "import",
            tmp_path / "filtered" / "kept.jsonl",
            _edits(tmp_path, {"edits": [_edit(decision="maybe", id="x\x1b[2J")]}, "bad.json"),
            "--out",
            tmp_path / "other",
        ],
        ["edits[0]", "x\\u001b[2J", "maybe"],
        absent=[tmp_path / "other"],
    )


def _identical_duplicates(tmp_path: Path) -> None:
    _, out, stdout = _import(tmp_path, {"reviewer": "ada", "edits": [_edit(), _edit()]})
    assert "reviewed 1 labels" in stdout and [a["id"] for a in _audit(out)] == ["u1"]


def _audit_appended(tmp_path: Path) -> None:
    d, out, _ = _import(tmp_path, {"reviewer": "ada", "edits": [_edit()]})
    first = (out / "review_audit.jsonl").read_bytes()
    second = {"reviewer": "bo", "edits": [_edit("enter nine"), _edit(id="u2", decision="reject")]}
    edits = _edits(tmp_path, second, "second.json")
    assert run_cli("review", "import", d / "kept.jsonl", edits, "--out", out)[0] == 0
    after = (out / "review_audit.jsonl").read_bytes()
    assert after.startswith(first) and [a["reviewer"] for a in _audit(out)] == ["ada", "bo", "bo"]
    assert [p.id for p in read_pseudo_labels(out / "dropped.jsonl")] == ["u2"]


def _tsv_formulas(tmp_path: Path) -> None:
    texts = (
        '=HYPERLINK("http://x") now',
        "-5 degrees out",
        "@sum of it",
        "+1 more please",
        "'tis the one",
        "'=x still text",
        "plain words here",
    )
    d = _filtered(tmp_path, texts)
    rev = tmp_path / "rev"
    assert run_cli("review", "export", d / "kept.jsonl", "--out", rev, "--k", len(texts))[0] == 0
    sheet = io.StringIO((rev / "review.tsv").read_text())
    cells = [row["text"] for row in csv.DictReader(sheet, delimiter="\t")]
    assert sorted(cells) == sorted(["'" + t if t[0] in "=-@+'" else t for t in texts])
    assert all(not c.startswith(("=", "+", "-", "@")) for c in cells)
    out = tmp_path / "reviewed"
    rc, stdout, err = run_cli(
        "review", "import", d / "kept.jsonl", rev / "review.tsv", "--out", out, "--reviewer", "bo"
    )
    assert rc == 0 and f"accepted {len(texts)} (0 edited)" in stdout, err  # the quotes came off again
    assert sorted(p.text for p in read_pseudo_labels(out / "kept.jsonl")) == sorted(texts)


def _edits_in_out_folder(tmp_path: Path) -> None:
    d = _filtered(tmp_path)
    rev = tmp_path / "rev"
    rev.mkdir()
    edits = _edits(rev, {"reviewer": "ada", "edits": [_edit()]})
    _cli_refused(
        ["review", "import", d / "kept.jsonl", edits, "--out", rev],
        [str(rev), "holds the input"],
        unchanged=[d, rev],
    )


def _kept_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.jsonl"
    target.write_text("precious\n")
    d = tmp_path / "f"
    d.mkdir()
    (d / "kept.jsonl").symlink_to(target)
    labels = _labels(tmp_path)
    _cli_refused(
        ["filter", labels, "--out", d, *FILTER_ARGS],
        ["kept.jsonl: it is a symbolic link"],
        unchanged=[target, d],
    )
    assert run_cli("filter", labels, "--out", d, *FILTER_ARGS, "--force")[0] == 0
    assert target.read_text() == "precious\n" and not (d / "kept.jsonl").is_symlink()  # the link replaced


def _filter_out_is_a_file(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    for force in ((), ("--force",)):
        _cli_refused(
            ["filter", _labels(tmp_path), "--out", notes, *FILTER_ARGS, *force],
            [str(notes), "it is a file, and this step writes a folder"],
            unchanged=[notes],
        )


def _filter_force(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("\\section{}")
    assert run_cli("filter", _labels(tmp_path), "--out", home, *FILTER_ARGS, "--force")[0] == 0
    assert (home / "thesis.tex").read_text() == "\\section{}"
    assert len(read_pseudo_labels(home / "kept.jsonl")) == 4


def _filter_all_or_nothing(tmp_path: Path) -> None:
    """A filter run that dies while writing leaves the previous run's files, all of them, as they were."""
    from unittest import mock

    d = _filtered(tmp_path)
    before = snapshot(d)
    labels = _labels(tmp_path, "other.jsonl", texts=("enter nine",) * 3)
    with mock.patch("asr_distill.quality.stage.atomic_write_text", side_effect=OSError("disk full")):
        with pytest.raises(OSError, match="disk full"):
            run_cli("filter", labels, "--out", d, *FILTER_ARGS)
    assert snapshot(d) == before and not list(d.glob(".staging*"))
    assert run_cli("filter", labels, "--out", d, *FILTER_ARGS)[0] == 0  # the lock went with the failed run
    assert [p.text for p in read_pseudo_labels(d / "kept.jsonl")] == ["enter nine"] * 3


def _export_out_is_ckpt(tmp_path: Path) -> None:
    marker = tmp_path / "payload_ran"
    ckpt = crafted_pickle(tmp_path / "last.ckpt", marker, legacy=False)
    for force in ((), ("--force",)):
        _cli_refused(
            ["export", ckpt, "--out", ckpt, *force], [str(ckpt), "is the input"], unchanged=[tmp_path]
        )
    assert not marker.exists()


def _export_out_unrelated(tmp_path: Path) -> None:
    marker = tmp_path / "payload_ran"
    ckpt = crafted_pickle(tmp_path / "last.ckpt", marker, legacy=False)
    notes = tmp_path / "student.pt"
    notes.write_text("not a model\n")
    _cli_refused(
        ["export", ckpt, "--out", notes],
        [str(notes), "not a torch checkpoint", "--force"],
        unchanged=[tmp_path],
    )
    assert not marker.exists()  # refused before the checkpoint was read


def _report_unrelated(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "report").mkdir(parents=True)
    (run / "report" / "notes.txt").write_text("mine\n")
    (run / "data_card.md").write_text("# card\nsome data\n")
    _cli_refused(
        ["report", run], [str(run / "report"), "notes.txt: this step does not write it"], unchanged=[run]
    )
    rc, stdout, _ = run_cli("report", run, "--force")
    assert rc == 0 and (run / "report" / "report.md").is_file()
    assert (run / "report" / "notes.txt").read_text() == "mine\n"


def _lock_held_review(tmp_path: Path) -> None:
    d = _filtered(tmp_path)
    edits = _edits(tmp_path, {"reviewer": "ada", "edits": [_edit()]})
    out = tmp_path / "reviewed"
    proc = hold_output(out, "review_dir")
    try:
        _cli_refused(
            ["review", "import", d / "kept.jsonl", edits, "--out", out],
            [f"pid {proc.pid}:", str(out), "being written by another process"],
            unchanged=[d, out],
        )
    finally:
        proc.kill()
        proc.wait()
    assert run_cli("review", "import", d / "kept.jsonl", edits, "--out", out)[0] == 0


def _lock_held_evaluate(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, manifest_bytes(fixture_lines()[:1]))
    out = tmp_path / "eval"
    proc = hold_output(out, "evaluate_dir")
    try:  # refused before any model is loaded or any clip decoded
        _cli_refused(
            ["evaluate", "tiny.en", "--manifest", manifest, "--out", out],
            [f"pid {proc.pid}:", str(out)],
            unchanged=[out],
        )
    finally:
        proc.kill()
        proc.wait()


def _label_wer_big(tmp_path: Path) -> None:
    from asr_distill.quality.filter_report import label_wer

    labels = [
        make_label("enter seven", id="ok", ref_text="enter seven"),
        make_label("enter seven", id="book", ref_text=big_text(BIG_REFERENCE_BYTES)),
    ]
    start = time.perf_counter()
    with logged() as messages:
        r = label_wer(labels)
    assert time.perf_counter() - start < 5 and (r.utterances, r.wer) == (1, 0.0)
    assert any("book" in m and "10000 words" in m and "too long to align" in m for m in messages)


def _evaluate_big(tmp_path: Path) -> None:
    from asr_distill.evaluate import measure
    from asr_distill.records import Transcription

    t = Transcription(
        model="m",
        source="m",
        params=1,
        ids=("ok", "book", "ok2"),
        refs=("enter seven", big_text(BIG_REFERENCE_BYTES), "enter nine"),
        hyps=("enter seven", "enter", "enter five"),
        durations=(1.0, 1.0, 1.0),
        speakers=(None, None, None),
        audio_s=3.0,
        wall_s=1.0,
    )
    start = time.perf_counter()
    with logged() as messages:
        result, scores = measure(t, "m.jsonl", resamples=50)
    assert time.perf_counter() - start < 5
    assert [s.id for s in scores] == ["ok", "ok2"] and result.skipped == 1 and result.score.wer == 25.0
    assert any("'book'" in m and "too long to align" in m for m in messages)


def _filter_big(tmp_path: Path) -> None:
    labels = [make_label("enter seven", id=f"u{i}", ref_text="enter seven") for i in range(3)]
    labels.append(make_label("enter seven", id="book", ref_text=big_text(5_000_000)))
    path = write_labels(tmp_path / "labels.jsonl", labels)
    start = time.perf_counter()
    with logged() as messages:
        rc, stdout, err = run_cli("filter", path, "--out", tmp_path / "f", *FILTER_ARGS)
    assert rc == 0 and time.perf_counter() - start < 30, err
    report = json.loads((tmp_path / "f" / "filter_report.json").read_text())
    assert report["references"] == 3 and report["kept"] == 4  # the label itself is kept; only not scored
    assert any("book" in m and "too long to align" in m for m in messages)


CASES: dict[str, Callable[[Path], None]] = {
    "manifest_utf8_bom": _bom,
    "manifest_gzip_named_gz": _gzip_as("m.jsonl.gz"),
    "manifest_gzip_named_jsonl": _gzip_as("m.jsonl"),
    "manifest_latin1_line": _latin1,
    "manifest_utf16": _utf16,
    "manifest_truncated_gzip": _truncated_gzip,
    "float_int16_range": _audio_case("float_int16_range", "out_of_range", "divide by 32768"),
    "float_x1e20": _audio_case("float_x1e20", "out_of_range", "far beyond"),
    "float_x1e12_8khz": _audio_case("float_x1e12_8khz", "out_of_range", "far beyond"),
    "dc_only": _audio_case("dc_only", "silent", "DC offset of 0.25"),
    "zero_data_chunk_size": _audio_case("zero_data_chunk_size", None),
    "x1e20_between_good_clips": _isolated,
    "crafted_pickle_zip": _pickle(legacy=False),
    "crafted_pickle_legacy": _pickle(legacy=True),
    "truncated_checkpoint": _truncated_checkpoint,
    "output_is_input": _output_is_input,
    "output_hard_link_to_input": _hard_link,
    "output_symlink_file": _symlink_file,
    "output_symlink_to_input": _symlink_to_input,
    "output_unrelated_file": _unrelated_file,
    "output_unrelated_file_forced": _unrelated_forced,
    "output_manifest_as_labels": _manifest_as_labels,
    "output_dir_unrelated_file": _dir_unrelated,
    "output_dir_is_input_folder": _dir_is_input_folder,
    "output_dir_would_overwrite_input": _dir_would_overwrite_input,
    "output_dir_of_another_step": _dir_of_another_step,
    "output_dir_named_file_not_ours": _dir_named_file_not_ours,
    "resumable_writer_on_foreign_file": _resumable_writer_on_foreign_file,
    "lock_held_names_holder": _lock_held,
    "lock_probe_for_merge": _lock_probe,
    "edits_text_null": _import_refused(
        {"reviewer": "ada", "edits": [_edit(None)]},
        ["edits[0]", '(id "u1")', "'text' must be a string, got null"],
    ),
    "edits_text_list": _import_refused(
        {"reviewer": "ada", "edits": [_edit(["a", "b"])]},
        ["edits[0]", '(id "u1")', "'text' must be a string, got a list"],
    ),
    "edits_text_number": _import_refused(
        {"reviewer": "ada", "edits": [_edit(12345)]},
        ["edits[0]", '(id "u1")', "'text' must be a string, got a number"],
    ),
    "edits_reject_then_accept": _import_refused(
        {
            "reviewer": "ada",
            "edits": [_edit(decision="reject"), _edit(), _edit(id="u2"), _edit("x", id="u2")],
        },
        ["2 ids have conflicting decisions", "(u1, u2)", "one edit per id"],
    ),
    "edits_json_is_a_list": _import_refused([_edit()], ["is a list, not an object with an 'edits' list"]),
    "edits_items_not_objects": _import_refused(
        {"edits": [_edit(), "u1", 3]}, ["edits[1]", "is a string, not an object"]
    ),
    "edits_broken_json": _import_refused(
        '{"reviewer": "ada", "edits": [\n{"id": "u1",', ["not valid JSON", "line 2"]
    ),
    "edits_not_utf8": _import_refused(b'{"reviewer": "caf\xe9", "edits": []}', ["not UTF-8"]),
    "edits_unknown_decision": _import_refused(
        {"edits": [_edit(decision="maybe")]}, ["edits[0]", '(id "u1")', "decision 'maybe'"]
    ),
    "edits_reviewer_not_a_string": _import_refused(
        {"reviewer": ["ada"], "edits": [_edit()]}, ["'reviewer' must be a string, got a list"]
    ),
    "edits_time_not_a_string": _import_refused(
        {"reviewer": "ada", "time": 12345, "edits": [_edit()]}, ["'time' must be a string, got a number"]
    ),
    "edits_huge_reviewer_name": _import_refused(
        {"reviewer": "x" * 100_000, "edits": [_edit()]}, ["reviewer is 100000 characters long"]
    ),
    "edits_reviewer_ansi_escapes": _reviewer_escaped,
    "edits_id_with_control_characters": _id_escaped,
    "edits_identical_duplicates": _identical_duplicates,
    "review_audit_appended_never_truncated": _audit_appended,
    "review_tsv_formula_cells": _tsv_formulas,
    "review_import_edits_in_out_folder": _edits_in_out_folder,
    "output_dir_kept_symlink": _kept_symlink,
    "filter_out_is_a_file": _filter_out_is_a_file,
    "filter_force_keeps_foreign_files": _filter_force,
    "filter_write_all_or_nothing": _filter_all_or_nothing,
    "export_out_is_the_checkpoint": _export_out_is_ckpt,
    "export_out_unrelated_file": _export_out_unrelated,
    "report_dir_unrelated_file": _report_unrelated,
    "lock_held_review_import": _lock_held_review,
    "lock_held_evaluate": _lock_held_evaluate,
    "label_wer_50mb_reference": _label_wer_big,
    "evaluate_50mb_reference": _evaluate_big,
    "filter_cli_5mb_reference": _filter_big,
}


LIBRARY_NAMES = [n for n in HOSTILE_NAMES if n not in LABEL_HOSTILE_NAMES]  # the rest: test_hostile_label


def test_every_hostile_case_has_a_check():
    assert sorted(CASES) == sorted(LIBRARY_NAMES)
    classes = {"reading", "audio", "code", "output", "lock", "review", "cost"}
    assert classes <= {c.klass for c in HOSTILE_CASES}


@pytest.mark.parametrize("name", LIBRARY_NAMES)
def test_hostile_case(name, tmp_path):
    CASES[name](tmp_path)


def test_payload_in_the_crafted_pickle_is_live(tmp_path):
    """The control: the same file does run its payload when unpickled unsafely."""
    import torch

    marker = tmp_path / "payload_ran"
    torch.load(crafted_pickle(tmp_path / "x.ckpt", marker, legacy=False), weights_only=False)
    assert marker.is_dir()
