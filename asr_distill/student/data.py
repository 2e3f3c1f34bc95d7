"""Training data for the student: NeMo manifests in, window-bucketed batches out.

Any NeMo-style manifest works (``audio_filepath``, ``duration``, ``text``, optional
``offset`` and ``id``): the teacher's label file, the filter stage's ``kept.jsonl``, or
human transcripts. Each clip is padded to the student's ``WindowPolicy`` window, and a
batch only holds clips of one window, so nothing is padded twice.

Frozen-encoder mode computes the encoder outputs once and caches them on disk, keyed by
the utterance (id, path, offset, duration), the window, the encoder's weights hash and
the augmentation settings: training then runs the decoder only (NOTES.md: 1.3 s vs 6.5 s
per step). SpecAugment and waveform augmentation (``augment.py``) need the encoder to see
the augmented input, so in that mode ``augment_copies`` augmented versions are cached
beside the clean one and each epoch draws one of them per clip.

Keeping general competence: ``replay_manifest`` mixes general-domain items into every
epoch (marked in the batch's ``replay``), and ``val_manifests`` adds named general sets
to validation, so the checkpoint kept by ``val/wer`` is the best on both kinds of speech.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import math
import os
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import whisper
from torch.utils.data import DataLoader, Dataset, Sampler
from whisper.tokenizer import Tokenizer

from ..audio import AudioError, load_audio
from ..features import FRAMES_PER_S, SAMPLE_RATE, encode_mels, log_mel_batch
from ..jsonl import read_jsonl
from ..manifest import read_manifest
from ..records import Skip
from ..safe_load import load_checkpoint
from .augment import WaveAugment, wave_augment
from .encoder_split import encoder_bottom
from .short_context import WindowPolicy

log = logging.getLogger(__name__)

IGNORE = -100  # target value cross-entropy skips (prefix and padding)
TIME_PRECISION_S = 0.02  # one timestamp token step, one encoder frame
MAX_TIMESTAMP = 1500  # <|30.00|>
CACHE_BATCH = 16  # clips per encoder pass while filling the feature cache
IN_DOMAIN = "in_domain"  # the validation set held out of (or given beside) the training labels
REPLAY = "replay"  # the source of general-domain items mixed into training
SET_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class ManifestItem:
    """One training clip: where its audio is and the transcript to learn."""

    id: str
    audio_filepath: str
    offset: float
    duration: float
    text: str
    source: str = ""  # the set it came from: ``REPLAY``, a validation set's name, or "" (training)


@dataclass(frozen=True)
class SpecAugment:
    """SpecAugment-style masks on a log-mel (Park et al. 2019; no time warping).

    ``time_width`` is a fraction of the clip's speech, so short clips lose little.
    Masked bins take the clip's mean, which for Whisper's normalised log-mel is silence-like.
    """

    freq_masks: int = 2
    freq_width: int = 27
    time_masks: int = 2
    time_width: float = 0.05

    def __call__(self, mel: torch.Tensor, speech_frames: int, rng: random.Random) -> torch.Tensor:
        """``mel``: ``(n_mels, T)``; returns a masked copy."""
        mel = mel.clone()
        fill = mel[:, :speech_frames].mean() if speech_frames else mel.mean()
        n_mels = mel.shape[0]
        for _ in range(self.freq_masks):
            w = rng.randint(0, min(self.freq_width, n_mels))
            f0 = rng.randint(0, n_mels - w)
            mel[f0 : f0 + w] = fill
        max_t = max(1, int(self.time_width * speech_frames))
        for _ in range(self.time_masks):
            w = rng.randint(0, max_t)
            t0 = rng.randint(0, max(0, speech_frames - w))
            mel[:, t0 : t0 + w] = fill
        return mel

    def signature(self) -> str:
        """Names the settings in the cache folder, so changed masks never reuse old features."""
        return f"f{self.freq_masks}x{self.freq_width}-t{self.time_masks}x{self.time_width}"


@dataclass(frozen=True)
class FeatureSpec:
    """What the data needs from the model: its encoder, tokenizer and window policy.

    The LightningModule provides it (``StudentModule.feature_spec``), so the DataModule's
    own arguments stay plain values a YAML config can hold.
    """

    model: whisper.model.Whisper
    encoder_sha: str
    tokenizer: Tokenizer
    prefix: tuple[int, ...]
    policy: WindowPolicy
    frozen_encoder: bool
    cache_through_block: int | None = None
    """With a frozen encoder: cache the hidden states after this many encoder blocks ``(T, d)``
    (no ``ln_post``) instead of the whole encoder's output, for students that train the top
    blocks; None: the whole encoder's output. ``encoder_sha`` then hashes the bottom only."""
    timestamps: bool = False
    """Targets are timestamped segments (``target_tokens`` with the clip's end), for students
    decoded in Whisper's timestamp mode."""


def read_items(path: str | os.PathLike, source: str = "") -> list[ManifestItem]:
    """The usable lines of a manifest, tagged with ``source``; unreadable lines are logged and left out."""
    items, skipped = [], 0
    for r in read_manifest(path):
        if isinstance(r, Skip):
            skipped += 1
            log.warning("%s: leaving out %s (%s: %s)", path, r.id, r.reason, r.message)
            continue
        if r.text is None:
            raise ValueError(f"{path}: the line for {r.audio_filepath} has no 'text'; training needs one")
        items.append(ManifestItem(r.id, r.audio_filepath, r.offset, r.duration, r.text.strip(), source))
    if not items:
        raise ValueError(f"{path} holds no usable lines (skipped {skipped})")
    return items


def label_provenance(path: str | os.PathLike) -> dict:
    """Where a manifest's labels came from: the file's sha256 and the teachers that wrote them."""
    path = Path(path)
    teachers = {}
    for d in read_jsonl(path):
        p = d.get("provenance")
        if isinstance(p, dict):
            teachers[(p.get("teacher"), p.get("weights_sha256"))] = p
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"manifest": str(path.resolve()), "sha256": digest, "teachers": list(teachers.values())}


def split_val(items: list[ManifestItem], fraction: float) -> tuple[list[ManifestItem], list[ManifestItem]]:
    """A deterministic held-out split by id hash, stable when the manifest grows."""

    def h(it: ManifestItem) -> float:
        return int(hashlib.sha1(it.id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    val = [it for it in items if h(it) < fraction]
    train = [it for it in items if h(it) >= fraction]
    if fraction > 0 and not val:
        val, train = train[:1], train[1:]
    return train, val


def target_tokens(
    tokenizer: Tokenizer, prefix: Sequence[int], text: str, max_len: int, end_s: float | None = None
) -> list[int]:
    """``prefix + text + <|endoftext|>``, Whisper's training format (text after a space).

    With ``end_s`` the text is one timestamped segment, ``<|0.00|> text <|end_s|>``, as
    Whisper writes it in timestamp mode (the clip's end stands for the speech's end: the
    clips are cut around one utterance). A cut text keeps its closing timestamp.
    """
    body = tokenizer.encode(" " + text) if text else []
    if end_s is None:
        return (list(prefix) + body)[: max_len - 1] + [tokenizer.eot]
    begin = tokenizer.timestamp_begin
    end = begin + min(round(end_s / TIME_PRECISION_S), MAX_TIMESTAMP)
    return (list(prefix) + [begin] + body)[: max_len - 2] + [end, tokenizer.eot]


def encoder_sha(model: whisper.model.Whisper) -> str:
    """sha256 of the encoder's weights, so a cache never serves another encoder's outputs."""
    h = hashlib.sha256()
    for k, v in sorted(model.encoder.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


class FeatureCache:
    """Encoder outputs ``(T, d)`` on disk, one float16 file per (clip, window, augmentation copy).

    The clean copy (0) is keyed by the encoder alone, so a change of augmentation never
    recomputes it or the validation set; augmented copies live in a folder that names every
    augmentation setting and the seed, so a stale copy is never served.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        spec: FeatureSpec,
        augment: SpecAugment | None,
        seed: int,
        wave: WaveAugment | None = None,
    ):
        self.root = Path(root) / spec.encoder_sha[:16]
        spec_sig = augment.signature() if augment else "nospec"
        self.augmented_root = self.root / f"{spec_sig}-{wave.signature() if wave else 'nowave'}-s{seed}"
        self.spec, self.augment, self.wave, self.seed = spec, augment, wave, seed

    def path(self, item: ManifestItem, window: float, copy: int) -> Path:
        """The file for one clip, window and copy; its name hashes the clip's id, file and span."""
        ident = f"{item.id}|{item.audio_filepath}|{item.offset}|{item.duration}"
        key = hashlib.sha1(ident.encode()).hexdigest()
        root = self.augmented_root if copy else self.root / "clean"
        return root / f"w{window:g}" / key[:2] / f"{key[:20]}-a{copy}.pt"

    def load(self, item: ManifestItem, window: float, copy: int) -> torch.Tensor:
        """The cached encoder output ``(T, d)``, as float32."""
        return load_checkpoint(self.path(item, window, copy)).float()

    def fill(self, items: Sequence[ManifestItem], copies: int, rank: int = 0, world: int = 1) -> int:
        """Compute what is missing (this rank's share); returns how many files were written."""
        todo = [
            (it, c)
            for n, it in enumerate(items)
            if n % world == rank
            for c in range(copies + 1)
            if not self.path(it, self.spec.policy.window_for(it.duration), c).is_file()
        ]
        if not todo:
            return 0
        by_window: dict[float, list] = defaultdict(list)
        for it, c in todo:
            by_window[self.spec.policy.window_for(it.duration)].append((it, c))
        start, done, audio_s = time.perf_counter(), 0, 0.0
        log.info("caching %d encoder outputs under %s", len(todo), self.root)
        for window, group in sorted(by_window.items()):
            for i in range(0, len(group), CACHE_BATCH):
                chunk = group[i : i + CACHE_BATCH]
                mels = mel_features(
                    [it for it, _ in chunk],
                    window,
                    self.spec.model.dims.n_mels,
                    [self._rng(it, c) if c else None for it, c in chunk],
                    self.augment,
                    self.wave,
                )
                with torch.no_grad():
                    feats = self._encode(mels.to(_device(self.spec.model)))
                for (it, c), f in zip(chunk, feats, strict=True):
                    _atomic_save(f.half().cpu().clone(), self.path(it, window, c))
                done += len(chunk)
                audio_s += sum(it.duration for it, _ in chunk)
                wall = time.perf_counter() - start
                log.info(
                    "cached %d/%d (window %gs) at %.1f audio s/s", done, len(todo), window, audio_s / wall
                )
        return done

    def _encode(self, mels: torch.Tensor) -> torch.Tensor:
        """What is cached: the encoder's output, or the frozen bottom's hidden states ``(B, T, d)``."""
        k = self.spec.cache_through_block
        return encode_mels(self.spec.model, mels) if k is None else encoder_bottom(self.spec.model, mels, k)

    def _rng(self, item: ManifestItem, copy: int) -> random.Random:
        return random.Random(f"{self.seed}|{item.id}|{copy}")


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load_clip(item: ManifestItem) -> np.ndarray:
    try:
        return load_audio(item.audio_filepath, item.offset, item.duration)
    except AudioError as e:
        raise ValueError(f"cannot train on {item.id}: {e}") from e


def mel_features(
    items: Sequence[ManifestItem],
    window: float,
    n_mels: int,
    rngs: Sequence[random.Random | None],
    augment: SpecAugment | None,
    wave: WaveAugment | None = None,
) -> torch.Tensor:
    """Log-mels ``(B, n_mels, 100 * window)``; items with an rng are augmented, waveform first.

    The waveform effects draw from the rng before the SpecAugment masks do, so a cache
    filled without waveform augmentation keeps its masks.
    """
    audios = [_load_clip(it) for it in items]
    if wave is not None:
        limit = int(window * SAMPLE_RATE)
        audios = [a if rng is None else wave(a, rng, limit) for a, rng in zip(audios, rngs, strict=True)]
    mels = log_mel_batch(audios, window, n_mels)
    if augment is None:
        return mels
    for b, (a, rng) in enumerate(zip(audios, rngs, strict=True)):
        if rng is not None:
            speech = min(mels.shape[-1], math.ceil(len(a) * FRAMES_PER_S / SAMPLE_RATE))
            mels[b] = augment(mels[b], speech, rng)
    return mels


class StudentDataset(Dataset):
    """Items with their target tokens; yields cached encoder outputs or log-mels.

    ``copies`` > 0 (training, frozen encoder) draws one of the cached augmented copies per
    fetch; in unfrozen training the waveform effects and masks are drawn afresh each fetch.
    """

    def __init__(
        self,
        items: list[ManifestItem],
        spec: FeatureSpec,
        max_tokens: int,
        cache: FeatureCache | None,
        copies: int = 0,
        augment: SpecAugment | None = None,
        wave: WaveAugment | None = None,
    ):
        self.items, self.spec, self.cache, self.copies = items, spec, cache, copies
        self.augment, self.wave = augment, wave
        self.tokens = [
            target_tokens(
                spec.tokenizer, spec.prefix, it.text, max_tokens, it.duration if spec.timestamps else None
            )
            for it in items
        ]
        self.windows = [spec.policy.window_for(it.duration) for it in items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        it, window = self.items[i], self.windows[i]
        out = {"text": it.text, "tokens": self.tokens[i], "replay": it.source == REPLAY, "set": it.source}
        if self.cache is not None:
            copy = random.randint(0, self.copies) if self.copies else 0
            out["features"] = self.cache.load(it, window, copy)
        else:
            rng = random.Random() if self.augment is not None or self.wave is not None else None
            n_mels = self.spec.model.dims.n_mels
            out["mel"] = mel_features([it], window, n_mels, [rng], self.augment, self.wave)[0]
        return out


def replay_allocation(windows: Sequence[float], count: int) -> dict[float, int]:
    """How many of an epoch's ``count`` replay draws come from each window: proportional, fixed.

    Fixed per-window counts keep the number of batches the same every epoch (Lightning
    reads it once, for the learning-rate schedule) while the items drawn change.
    """
    sizes = Counter(windows)
    exact = {w: count * n / len(windows) for w, n in sizes.items()}
    alloc = {w: int(x) for w, x in exact.items()}
    for w in sorted(exact, key=lambda w: (alloc[w] - exact[w], w))[: count - sum(alloc.values())]:
        alloc[w] += 1  # largest remainders first
    return alloc


def draw_replay(pool: dict[float, list[int]], alloc: dict[float, int], rng: random.Random) -> list[int]:
    """One epoch's replay indices: ``alloc[w]`` from window ``w``'s pool, no repeat before it is used up."""
    out = []
    for w in sorted(alloc):
        left = alloc[w]
        while left > 0:
            order = rng.sample(pool[w], len(pool[w]))
            out += order[:left]
            left -= len(order)
    return out


class WindowBatchSampler(Sampler[list[int]]):
    """Batches of clips that share one encoder window; shuffled per epoch; sharded per rank.

    Sharding here (not by Lightning's DistributedSampler) keeps every batch single-window
    under DDP; the config sets ``trainer.use_distributed_sampler: false`` for that reason.
    Indices from ``replay_from`` on are a replay pool: each epoch uses every index before it
    and ``replay_count`` drawn from the pool (seeded by epoch), mixed into the same batches.
    """

    def __init__(
        self,
        windows: Sequence[float],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        replay_from: int | None = None,
        replay_count: int = 0,
    ):
        self.windows, self.batch_size, self.shuffle = list(windows), batch_size, shuffle
        self.seed, self.rank, self.world, self.epoch = seed, rank, world, 0
        self.n_main = len(self.windows) if replay_from is None else replay_from
        self.replay_pool: dict[float, list[int]] = defaultdict(list)
        for i in range(self.n_main, len(self.windows)):
            self.replay_pool[self.windows[i]].append(i)
        pool = self.windows[self.n_main :]
        self.replay_alloc = replay_allocation(pool, replay_count) if pool and replay_count else {}

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch``: the same order on every rank, another one each epoch."""
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        groups: dict[float, list[int]] = defaultdict(list)
        for i in [*range(self.n_main), *draw_replay(self.replay_pool, self.replay_alloc, rng)]:
            groups[self.windows[i]].append(i)
        batches = []
        for _, idx in sorted(groups.items()):
            if self.shuffle:
                rng.shuffle(idx)
            batches += [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        if self.world > 1:  # every rank gets the same number of batches, or DDP would hang
            n = len(batches) // self.world * self.world or len(batches)
            batches = [batches[i % len(batches)] for i in range(max(n, self.world))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        if self.shuffle:
            self.epoch += 1  # a fresh order next epoch even when nobody calls set_epoch
        return iter(batches[self.rank :: self.world])

    def __len__(self) -> int:
        return len(self._all_batches()[self.rank :: self.world])


def collate(samples: list[dict], pad_id: int, prefix_len: int) -> dict:
    """Stack one window's samples; ``targets`` ignore the forced prefix and the padding.

    Returns ``tokens`` ``(B, L-1)`` decoder inputs, ``targets`` ``(B, L-1)`` next tokens,
    ``features`` ``(B, T, d)`` or ``mel`` ``(B, n_mels, 2T)``, ``replay`` ``(B,)`` (True for
    general-domain replay rows) and ``sets``, each row's validation set name.
    """
    width = max(len(s["tokens"]) for s in samples)
    seqs = torch.full((len(samples), width), IGNORE, dtype=torch.long)
    for b, s in enumerate(samples):
        seqs[b, : len(s["tokens"])] = torch.tensor(s["tokens"])
    targets = seqs[:, 1:].clone()
    targets[:, : prefix_len - 1] = IGNORE
    tokens = seqs[:, :-1].clone()
    tokens[tokens == IGNORE] = pad_id
    out = {"tokens": tokens, "targets": targets, "texts": [s["text"] for s in samples]}
    out["replay"] = torch.tensor([s["replay"] for s in samples], dtype=torch.bool)
    out["sets"] = [s["set"] for s in samples]
    key = "features" if "features" in samples[0] else "mel"
    out[key] = torch.stack([s[key] for s in samples])
    return out


def _check_switches(hp: dict) -> None:
    """Refuse data settings that cannot work, naming the setting to change."""
    if hp["batch_size"] < 1:
        raise ValueError(f"batch_size must be >= 1, got {hp['batch_size']}")
    if not 0 <= hp["val_fraction"] < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {hp['val_fraction']}")
    if hp["replay_ratio"] < 0:
        raise ValueError(f"replay_ratio must be >= 0, got {hp['replay_ratio']}")
    if bool(hp["replay_manifest"]) != (hp["replay_ratio"] > 0):
        raise ValueError(
            "replay needs both replay_manifest (general-domain items with text) and replay_ratio > 0 "
            f"(e.g. 0.2), got replay_manifest={hp['replay_manifest']!r}, replay_ratio={hp['replay_ratio']}"
        )
    for name in hp["val_manifests"] or {}:
        if not SET_NAME.fullmatch(name) or name == IN_DOMAIN:
            raise ValueError(
                f"val_manifests: set name {name!r} must be letters, digits, '_', '.' or '-', "
                f"and not {IN_DOMAIN!r} (the held-out in-domain set's name)"
            )


class StudentDataModule(L.LightningDataModule):
    """Pseudo-label manifests → window-bucketed batches (cached encoder outputs when frozen).

    Args:
        train_manifest: NeMo manifest with the labels to learn (teacher labels, or the
            filter stage's ``kept.jsonl``).
        val_manifest: optional manifest for validation WER; else ``val_fraction`` of the
            training lines is held out (scored against their labels). Either is the
            ``in_domain`` validation set.
        val_fraction: share held out when there is no ``val_manifest``.
        batch_size: clips per batch (per device).
        cache_dir: where frozen-encoder outputs are cached.
        augment_copies: augmented copies cached per clip in frozen mode (0: clean only).
        spec_augment: mask log-mels while training.
        freq_masks, freq_width, time_masks, time_width: SpecAugment settings.
        max_tokens: longest target (prefix + text + end), in tokens.
        num_workers: DataLoader worker processes.
        seed: shuffling, replay and augmentation seed.
        replay_manifest: general-domain items with text (human or teacher labels) replayed
            so the student keeps what it knew; batches mark them in ``replay``.
        replay_ratio: replay items per epoch, as a share of the training items (0.2: one
            replay item for five in-domain ones), drawn afresh each epoch.
        augment: waveform effects for training items (``augment.EFFECTS``: speed, pitch, noise,
            reverb, telephone); validation is never augmented.
        augment_prob: chance each named effect is applied to a clip.
        val_manifests: more validation sets by name (e.g. general speech); ``val/wer`` is
            over all of them together with the in-domain set, so checkpoint selection
            weighs both.
    """

    def __init__(
        self,
        train_manifest: str,
        val_manifest: str | None = None,
        val_fraction: float = 0.05,
        batch_size: int = 8,
        cache_dir: str = "runs/feature_cache",
        augment_copies: int = 2,
        spec_augment: bool = True,
        freq_masks: int = 2,
        freq_width: int = 27,
        time_masks: int = 2,
        time_width: float = 0.05,
        max_tokens: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        replay_manifest: str | None = None,
        replay_ratio: float = 0.0,
        augment: list[str] | None = None,
        augment_prob: float = 0.5,
        val_manifests: dict[str, str] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        _check_switches(self.hparams)
        self.augment = SpecAugment(freq_masks, freq_width, time_masks, time_width) if spec_augment else None
        self.wave = wave_augment(augment, augment_prob)
        self.spec: FeatureSpec | None = None
        self.train_set: StudentDataset | None = None
        self.val_set: StudentDataset | None = None
        self.n_train, self.replay_count = 0, 0

    def attach(self, spec: FeatureSpec) -> None:
        """Give the data its model side (done in ``setup`` when a Trainer runs it)."""
        self.spec = spec

    def provenance(self) -> dict:
        """The labels' origin, written into every checkpoint the student saves."""
        hp = self.hparams
        out = {"train": label_provenance(hp.train_manifest)}
        if hp.val_manifest:
            out["val"] = label_provenance(hp.val_manifest)
        if hp.replay_manifest:
            out["replay"] = label_provenance(hp.replay_manifest)
        for name, path in (hp.val_manifests or {}).items():
            out[f"val_{name}"] = label_provenance(path)
        return out

    def _read_sets(self) -> tuple[list[ManifestItem], list[ManifestItem], list[ManifestItem]]:
        """Training, replay and validation items; each validation item names its set."""
        hp = self.hparams
        items = read_items(hp.train_manifest)
        if hp.val_manifest:
            train, val = items, read_items(hp.val_manifest, IN_DOMAIN)
        else:
            train, held = split_val(items, hp.val_fraction)
            val = [dataclasses.replace(it, source=IN_DOMAIN) for it in held]
        for name, path in (hp.val_manifests or {}).items():
            val += read_items(path, name)
        replay = read_items(hp.replay_manifest, REPLAY) if hp.replay_manifest else []
        return train, replay, val

    def _copies(self) -> int:
        """Augmented copies to cache per training clip (frozen encoder); refuses copies that cannot be."""
        copies = self.hparams.augment_copies if self.augment or self.wave else 0
        if self.wave is not None and self.spec.frozen_encoder and copies < 1:
            raise ValueError(
                "augment is set but augment_copies is 0: with a frozen encoder the augmented "
                "audio is seen only through cached copies; set augment_copies >= 1"
            )
        return copies

    def setup(self, stage: str | None = None) -> None:
        """Read the manifests and, for a frozen encoder, fill the feature cache (each rank its share)."""
        if self.train_set is not None:
            return
        if self.spec is None:
            module = self.trainer.lightning_module if self.trainer else None
            if module is None or not hasattr(module, "feature_spec"):
                raise RuntimeError("StudentDataModule needs the model side: attach(module.feature_spec())")
            self.attach(module.feature_spec())
        hp, spec = self.hparams, self.spec
        train, replay, val = self._read_sets()
        self.n_train = len(train)
        self.replay_count = max(1, round(hp.replay_ratio * len(train))) if replay else 0
        log.info(
            "training on %d clips (%.1f min) + %d replayed per epoch from %d, validating on %d",
            len(train),
            sum(i.duration for i in train) / 60,
            self.replay_count,
            len(replay),
            len(val),
        )
        cache, copies = None, self._copies()
        if spec.frozen_encoder:
            cache = FeatureCache(hp.cache_dir, spec, self.augment, hp.seed, self.wave)
            rank, world = self._rank_world()
            cache.fill(train + replay, copies, rank, world)
            cache.fill(val, 0, rank, world)
            if self.trainer is not None and world > 1:
                self.trainer.strategy.barrier("feature_cache")
        live = (None, None) if spec.frozen_encoder else (self.augment, self.wave)
        self.train_set = StudentDataset(train + replay, spec, hp.max_tokens, cache, copies, *live)
        self.val_set = StudentDataset(val, spec, hp.max_tokens, cache) if val else None

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def _loader(self, ds: StudentDataset, shuffle: bool) -> DataLoader:
        rank, world = self._rank_world()
        hp = self.hparams
        replay = (self.n_train, self.replay_count) if shuffle else (None, 0)
        sampler = WindowBatchSampler(ds.windows, hp.batch_size, shuffle, hp.seed, rank, world, *replay)
        if shuffle and self.trainer is not None:
            sampler.set_epoch(self.trainer.current_epoch)
        fn = functools.partial(collate, pad_id=self.spec.tokenizer.eot, prefix_len=len(self.spec.prefix))
        return DataLoader(ds, batch_sampler=sampler, num_workers=hp.num_workers, collate_fn=fn)

    def train_dataloader(self) -> DataLoader:
        """Shuffled single-window batches (in-domain and this epoch's replay items)."""
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """Single-window batches in a fixed order over every validation set; none without one."""
        return self._loader(self.val_set, shuffle=False) if self.val_set else []
