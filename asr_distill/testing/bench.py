"""Import a script of the checkout's ``benchmarks/`` folder as a module, for its tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(stem: str) -> ModuleType:
    """``benchmarks/<stem>.py`` as the module ``<stem>_bench`` (registered before it runs).

    Dataclasses look their module up in ``sys.modules`` while the class is made, so the
    module is registered first.
    """
    spec = importlib.util.spec_from_file_location(f"{stem}_bench", BENCHMARKS / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
