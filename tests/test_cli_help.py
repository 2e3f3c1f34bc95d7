"""``asr-distill --help`` and each ``asr-distill SUB --help`` answer without importing torch or whisper.

Each help runs in a fresh interpreter, so modules a previous test imported cannot hide an import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from asr_distill.cli import build_parser

HEAVY = ("torch", "whisper", "lightning", "ctranslate2", "faster_whisper")
# ``train fit --help`` is LightningCLI's own: it lists the model's and data's options from
# their signatures, so it imports them (and torch) by design; ``train --help`` stays light.
LIGHTNING_HELP: set[str] = set()

PROBE = """
import contextlib, io, json, sys
from asr_distill.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[1:] + ["--help"])
    except SystemExit as e:
        code = e.code
modules = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps({"code": code, "help": out.getvalue(), "modules": modules}))
"""


def _subcommands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return list(sub.choices)


def _help(*argv: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    result["loaded"] = [m for m in HEAVY if m in result["modules"]]
    return result


def test_every_stage_has_a_subcommand():
    assert {
        "synth",
        "manifest",
        "label",
        "merge",
        "filter",
        "review",
        "train",
        "export",
        "evaluate",
        "report",
        "run",
        "doctor",
    } <= set(_subcommands())


@pytest.mark.parametrize(
    "argv",
    [(), *[(s,) for s in _subcommands() if s not in LIGHTNING_HELP]],
    ids=lambda argv: " ".join(argv) or "top",
)
def test_help_imports_neither_torch_nor_whisper(argv):
    result = _help(*argv)
    assert result["code"] == 0 and "usage: asr-distill" in result["help"]
    assert result["loaded"] == [], f"asr-distill {' '.join(argv)} --help imported {result['loaded']}"


def test_label_help_shows_the_librarys_constants():
    """The choices come from teacher.options, the module the labeler itself reads."""
    from asr_distill.teacher.options import BACKENDS, PRECISIONS, SHORT_WINDOWS_S

    text = " ".join(_help("label")["help"].split())
    assert "{" + ",".join(str(w) for w in SHORT_WINDOWS_S) + "}" in text
    assert "{" + ",".join(PRECISIONS) + "}" in text and "{" + ",".join(BACKENDS) + "}" in text


def test_package_import_is_light_and_names_still_load():
    probe = (
        "import sys, asr_distill; light = 'torch' not in sys.modules; "
        "from asr_distill import load_teacher, Teacher, TeacherNotFoundError; "
        "print(light, callable(load_teacher), issubclass(TeacherNotFoundError, LookupError))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert proc.stdout.split() == ["True", "True", "True"]


@pytest.mark.parametrize("alpha", ["1.5", "-0.1", "half"])
def test_export_refuses_a_wise_alpha_outside_0_1_before_loading(alpha, tmp_path, capsys):
    from asr_distill.cli import main

    with pytest.raises(SystemExit) as e:
        main(["export", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "s.pt"), "--wise-alpha", alpha])
    assert e.value.code == 2
    assert "--wise-alpha: expected a number in [0, 1]" in capsys.readouterr().err
