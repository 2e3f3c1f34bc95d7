"""The teacher: resolving Whisper models offline and decoding batches with confidence.

Names load lazily, so that ``teacher.options`` (constants the command line shows in
``--help``) and ``teacher.errors`` import without torch or whisper.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import TeacherNotFoundError
    from .resolve import Teacher, load_teacher

_LAZY = {"Teacher": "resolve", "load_teacher": "resolve", "TeacherNotFoundError": "errors"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)


__all__ = ["Teacher", "TeacherNotFoundError", "load_teacher"]
