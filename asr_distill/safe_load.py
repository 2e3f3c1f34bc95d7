"""Load checkpoints and ``.pt`` files without running code from them.

``torch.load`` unpickles, and a pickle can name any Python callable (``os.system``...)
to be called while loading. Every file this toolkit reads (Lightning checkpoints, exported
students, converted teachers, cached features) holds only tensors and plain data, so it is
loaded with ``weights_only=True``: torch's restricted unpickler, which refuses any global
that is not allow-listed. ``SAFE_GLOBALS`` adds the few harmless types a Lightning
checkpoint may carry in its hyper-parameters; the allow-list is scoped to each load, so
the rest of the process keeps torch's defaults.

A checkpoint saved from ``StudentModule`` (and a plain LightningModule with
``ModelCheckpoint``, ``EarlyStopping``, a scheduler and bf16) loads with torch's defaults
alone; the extra entries cover hyper-parameters given as paths or as an ``AttributeDict``.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import pickletools
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read (truncated, not a torch file); one line naming it."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that would run code (or build objects outside the allow-list) when loaded."""


def _safe_globals() -> list:
    """Types a checkpoint may name besides torch's defaults (tensors, dicts, lists, numbers)."""
    found = [pathlib.PosixPath, pathlib.PurePosixPath, pathlib.WindowsPath, pathlib.PureWindowsPath]
    try:
        from lightning.fabric.utilities.data import AttributeDict
    except ImportError:  # lightning is only needed to train
        return found
    return [*found, AttributeDict]


@contextmanager
def checkpoint_globals() -> Iterator[None]:
    """Allow ``SAFE_GLOBALS`` for ``torch.load(weights_only=True)`` inside the block only.

    For code that must call ``torch.load`` itself (Lightning's own resume, say).
    """
    import torch

    with torch.serialization.safe_globals(_safe_globals()):
        yield


def _pickle_globals(path: Path) -> list[str]:
    """Globals a plain pickle names, read statically with ``pickletools`` (nothing is run)."""
    names, strings = [], []
    with open(path, "rb") as f:
        try:
            for op, arg, _ in pickletools.genops(f):
                if op.name == "GLOBAL":
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
        except Exception:  # a broken pickle: report what was seen before the break
            pass
    return names


def _refused_globals(path: Path, message: str) -> list[str]:
    """The Python objects the file asks for, as torch reports them, else as the pickle names them."""
    import torch

    names = _GLOBAL_RE.findall(message)
    if not names:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # a legacy (non-zip) file: read its pickle ourselves
            names = _pickle_globals(path)
    return sorted(set(names))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with the allow-list; never runs code from the file.

    Args:
        path: A Lightning ``.ckpt``, an exported ``.pt``, or any torch file of plain data.
        map_location: As for ``torch.load``; CPU by default so loading needs no GPU.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeCheckpointError: the file names a Python object outside the allow-list (a
            crafted pickle, or a checkpoint holding arbitrary objects); nothing was run.
        CheckpointError: the file is not a readable torch file (truncated, another format).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist or is not a file")
    try:
        with checkpoint_globals(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        names = _refused_globals(path, str(e))
        if not names:
            raise CheckpointError(
                f"{path} is not a readable torch checkpoint (its pickle uses instructions "
                "the safe loader does not accept, or it is another kind of file)"
            ) from None
        raise UnsafeCheckpointError(
            f"{path} holds Python objects that loading would construct or call ({', '.join(names)}); "
            "refused without running anything: only tensors and plain data are loaded. "
            "Use a checkpoint written by this toolkit"
        ) from None
    except Exception as e:  # the restricted unpickler and the zip reader raise many types on junk
        first = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        raise CheckpointError(
            f"{path} is not a readable torch checkpoint ({first}); "
            "it may be truncated: copy or write it again"
        ) from None


__all__ = ["CheckpointError", "UnsafeCheckpointError", "checkpoint_globals", "load_checkpoint"]
