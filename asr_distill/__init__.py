"""asr_distill: pseudo-label speech with a Whisper teacher, filter, train a student, measure WER.

The public names load lazily: ``import asr_distill`` (and so ``asr-distill --help``) does
not import torch or whisper.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .teacher import Teacher, TeacherNotFoundError, load_teacher

_LAZY = {"Teacher": ".teacher", "TeacherNotFoundError": ".teacher", "load_teacher": ".teacher"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name], __name__), name)


def run(config, **kwargs):
    """The whole pipeline from one config (a YAML path or a dict); see ``asr_distill.pipeline.run``."""
    from .pipeline import run as _run

    return _run(config, **kwargs)


__all__ = ["Teacher", "TeacherNotFoundError", "__version__", "load_teacher", "run"]
