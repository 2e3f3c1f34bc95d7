"""A teacher adapted to short encoder windows by self-distillation, and how far it agrees.

In a 10 s encoder window Whisper writes spelled letters and digit strings differently from
its 30 s window (``ContextFloor``), so the labeler's floor stays at 20 s. Here the teacher
learns its own 30 s outputs in the short window, from unlabeled audio and no references:

1. ``targets``: the teacher labels the audio at 30 s, greedily, through the labeler (resumable;
   unusable audio becomes recorded skips); its token sequences are the targets.
2. ``adapt``: a copy, its decoder frozen, learns to give those outputs from the clip in the
   window the labeler gives it at ``min_window_s=window_s`` (``ContextFloor.window_for``):
   LoRA adapters on the encoder (``student.regularise``) or its top blocks' own weights, with
   the decoder's cross-entropy teacher-forced on the targets, optionally plus a KL term to the
   30 s decoder's distributions. The adapters are merged into the weights at the end.
3. ``save_derived``: an openai-whisper checkpoint (``whisper.load_model`` opens it) whose
   ``asr_distill_derived`` block (a ``Derivation``: parent sha256, data, steps) ``load_teacher``
   exposes as ``Teacher.derived``, and every label's provenance carries.
4. ``agreement``: the share of utterances two label files write alike after a normaliser.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from whisper.model import Whisper
from whisper.tokenizer import get_tokenizer

from .. import __version__
from ..audio import load_audio
from ..features import encode_mels, log_mel_batch
from ..jsonl import read_jsonl
from ..normalise import get_normaliser
from ..records import Record, TeacherLabel
from ..student.encoder_split import encoder_bottom, encoder_top
from ..student.regularise import LORA_TARGETS, add_lora, frozen_copy, merge_lora
from .loops import loops
from .options import FULL_CONTEXT, SHORT_WINDOWS_S, WINDOW_S, ContextFloor, LabelOptions
from .resolve import DERIVED_KEY, Teacher, sha256_files

log = logging.getLogger(__name__)

# The targets: the teacher's greedy 30 s output, no temperature fallback (a sampled guess is
# not what its encoder's features say); outputs that loop are left out of the targets.
TARGET_OPTIONS = LabelOptions(windows=FULL_CONTEXT, temperatures=(0.0,))
_IGNORE = -100  # F.nll_loss's ignore_index: positions whose next token is not a target


@dataclass(frozen=True)
class AdaptConfig(Record):
    """How the teacher is adapted to a short window; stored whole in the derived teacher.

    Attributes:
        window_s: the labeler's floor the adapted teacher is for (``SHORT_WINDOWS_S``, < 30 s).
        steps: optimizer steps.
        lr: AdamW learning rate (linear warm-up over the first tenth of the steps).
        batch_size: clips per step; the clips of one step share one window.
        lora_rank: rank of LoRA adapters on the adapted blocks' linear layers; 0 trains those
            blocks' own weights (and ``ln_post``) instead.
        lora_alpha: LoRA scale (``alpha / rank`` multiplies the adapters' output).
        train_encoder_layers: the top N encoder blocks that change (0: all of them); the
            blocks below run without gradients.
        kl_weight: weight of T^2 x KL from the 30 s decoder's distributions (one more 30 s
            encoder pass per step, without gradients); 0 leaves it out.
        temperature: the KL's temperature.
        seed: fixes the adapters' start and the batches' order.
    """

    window_s: float = 10.0
    steps: int = 200
    lr: float = 1e-4
    batch_size: int = 8
    lora_rank: int = 8
    lora_alpha: float = 16.0
    train_encoder_layers: int = 0
    kl_weight: float = 0.0
    temperature: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.window_s not in SHORT_WINDOWS_S or self.window_s >= WINDOW_S:
            short = [w for w in SHORT_WINDOWS_S if w < WINDOW_S]
            raise ValueError(f"window_s must be one of {short}, got {self.window_s}")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"need steps >= 1, batch_size >= 1 and lr > 0, got {self}")
        if self.lora_rank < 0 or self.train_encoder_layers < 0 or self.kl_weight < 0 or self.temperature <= 0:
            raise ValueError(
                f"need lora_rank, train_encoder_layers, kl_weight >= 0 and temperature > 0, got {self}"
            )

    @property
    def method(self) -> str:
        """``lora`` (adapters, merged) or ``weights`` (the blocks' own weights train)."""
        return "lora" if self.lora_rank else "weights"


@dataclass(frozen=True)
class AdaptationData(Record):
    """The unlabeled audio a teacher adapted on: so a claim of "not seen" can be checked."""

    manifest: str
    manifest_sha256: str | None
    targets: str
    clips: int
    audio_s: float


@dataclass(frozen=True)
class Derivation(Record):
    """A derived teacher's provenance: its parent, what it learnt from and how.

    ``loss_start``/``loss_end`` are the mean training loss over the first and last tenth of
    the steps (the targets' NLL per token in the short window).
    """

    parent: str
    parent_weights_sha256: str
    parent_source: str
    method: str
    config: AdaptConfig
    data: AdaptationData
    loss_start: float
    loss_end: float
    toolkit_version: str


@dataclass(frozen=True)
class Target:
    """One clip and the text tokens the teacher wrote for it at 30 s."""

    id: str
    audio_filepath: str
    offset: float
    duration: float
    language: str
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class TargetSet:
    """The targets of one adaptation and where they came from."""

    items: tuple[Target, ...]
    data: AdaptationData


@dataclass(frozen=True)
class Adapted:
    """An adapted model (adapters merged), its provenance, and what training cost."""

    model: Whisper
    derivation: Derivation
    seconds_per_step: float


# --- targets -------------------------------------------------------------------------------


def targets(
    teacher: Teacher,
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    *,
    batch_size: int = 8,
    precision: str = "fp32",
    progress: bool = True,
    force: bool = False,
) -> TargetSet:
    """The teacher's greedy 30 s outputs for ``manifest``, labeled into ``out`` (resumable).

    Labeling goes through ``label_to_file`` with ``TARGET_OPTIONS``: a rerun resumes, and audio
    that cannot be used is recorded in ``out``'s skips file, not trained on.
    """
    from ..label import LabelRun, label_to_file

    run = LabelRun(
        teacher, options=TARGET_OPTIONS, batch_size=batch_size, precision=precision, progress=progress
    )
    label_to_file(manifest, out, run, force=force)
    return read_targets(out, teacher, manifest)


def read_targets(labels: str | os.PathLike, teacher: Teacher, manifest: str | os.PathLike) -> TargetSet:
    """The targets in a label file ``targets`` wrote; outputs that loop are left out.

    Raises:
        ValueError: a label of another teacher, or not decoded greedily in the 30 s window.
    """
    tok = get_tokenizer(teacher.model.is_multilingual, num_languages=teacher.model.num_languages)
    items, looped = [], 0
    threshold = TARGET_OPTIONS.compression_ratio_threshold
    for d in read_jsonl(labels):
        lab = TeacherLabel.from_dict(d)
        if lab.provenance.weights_sha256 != teacher.weights_sha256:
            raise ValueError(
                f"{labels}: {lab.id} was labeled by {lab.provenance.teacher} "
                f"({lab.provenance.weights_sha256[:12]}), not by the teacher adapted here "
                f"({teacher.name}, {teacher.weights_sha256[:12]}); give another targets file"
            )
        if lab.window_s != WINDOW_S or lab.temperature != 0.0:
            raise ValueError(
                f"{labels}: {lab.id} was decoded in a {lab.window_s:g} s window at temperature "
                f"{lab.temperature:g}; targets are greedy 30 s outputs (teacher.short_window.targets)"
            )
        if loops(lab.text) or lab.compression_ratio > threshold:
            looped += 1
            continue
        ids = _token_ids(tok, lab)
        items.append(Target(lab.id, lab.audio_filepath, lab.offset, lab.duration, lab.language, ids))
    if looped:
        log.info("%d looping outputs left out of the targets", looped)
    path = Path(manifest)
    data = AdaptationData(
        manifest=str(manifest),
        manifest_sha256=sha256_files([path]) if path.is_file() else None,
        targets=str(labels),
        clips=len(items),
        audio_s=round(sum(t.duration for t in items), 2),
    )
    return TargetSet(tuple(items), data)


def _token_ids(tok, label: TeacherLabel) -> tuple[int, ...]:
    """The text tokens the teacher emitted, from their recorded texts; else the text re-encoded.

    A token whose text is part of a UTF-8 character cannot be looked up from its text: then the
    label's text is encoded afresh (the usual tokenisation of the same words).
    """
    try:
        ids = [tok.encoding.encode_single_token(t.text.encode("utf-8")) for t in label.tokens]
    except KeyError:
        ids = None
    if ids is None or tok.decode(ids).strip() != label.text:
        ids = tok.encode(" " + label.text) if label.text else []
    return tuple(ids)


# --- adaptation ----------------------------------------------------------------------------


def adapt(
    teacher: Teacher, data: TargetSet, config: AdaptConfig | None = None, *, progress: bool = True
) -> Adapted:
    """A copy of ``teacher`` whose encoder gives its 30 s outputs in ``config.window_s`` windows.

    Runs where the teacher's model is; deterministic for one seed, machine and thread count.
    The caller's torch RNG state is left as it was.

    Raises:
        ValueError: no targets, or more ``train_encoder_layers`` than the encoder has.
    """
    config = config or AdaptConfig()
    if not data.items:
        raise ValueError(f"no targets to adapt on in {data.data.targets} (every clip skipped or looping?)")
    parent = teacher.model.eval()
    with torch.random.fork_rng(devices=_cuda(parent)):
        torch.manual_seed(config.seed)
        model, split = _trainable_copy(parent, config)
        losses, wall = _train(model, parent, data.items, config, split, progress)
    merge_lora(model)
    model.eval().requires_grad_(False)
    tenth = max(1, len(losses) // 10)
    derivation = Derivation(
        parent=teacher.name,
        parent_weights_sha256=teacher.weights_sha256,
        parent_source=teacher.source,
        method=config.method,
        config=config,
        data=data.data,
        loss_start=round(sum(losses[:tenth]) / tenth, 5),
        loss_end=round(sum(losses[-tenth:]) / tenth, 5),
        toolkit_version=__version__,
    )
    return Adapted(model, derivation, round(wall / len(losses), 3))


def _cuda(model: Whisper) -> list[torch.device]:
    device = next(model.parameters()).device
    return [device] if device.type == "cuda" else []


def _trainable_copy(parent: Whisper, config: AdaptConfig) -> tuple[Whisper, int]:
    """A frozen copy with its top encoder blocks made trainable; returns it and the first such block.

    The decoder never trains: the adapted encoder must speak to the decoder as it is.
    """
    model = frozen_copy(parent)
    n = model.dims.n_audio_layer
    top = config.train_encoder_layers or n
    if top > n:
        raise ValueError(f"train_encoder_layers is {top}, but the teacher's encoder has {n} blocks")
    split = n - top
    if config.lora_rank:
        add_lora(model, config.lora_rank, config.lora_alpha, LORA_TARGETS, range(split, n), decoder=False)
    else:
        model.encoder.blocks[split:].requires_grad_(True)
        model.encoder.ln_post.requires_grad_(True)
    return model, split


def _batches(items: Sequence[Target], config: AdaptConfig) -> Iterator[tuple[float, list[Target]]]:
    """Endless ``(window, clips)`` batches, each of one window, in an order the seed fixes."""
    floor = ContextFloor(config.window_s)
    groups: dict[float, list[Target]] = defaultdict(list)
    for t in items:
        groups[floor.window_for(t.duration)].append(t)
    rng = random.Random(config.seed)
    size = config.batch_size
    while True:
        epoch = []
        for window, group in sorted(groups.items()):
            order = list(group)
            rng.shuffle(order)
            epoch += [(window, order[i : i + size]) for i in range(0, len(order), size)]
        rng.shuffle(epoch)
        yield from epoch


def _train(
    model: Whisper, parent: Whisper, items: Sequence[Target], config: AdaptConfig, split: int, progress: bool
) -> tuple[list[float], float]:
    """AdamW over the trainable parameters; returns each step's loss and the wall seconds."""
    from tqdm.auto import tqdm

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    warm = max(1, config.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warm))
    batches = _batches(items, config)
    losses: list[float] = []
    bar = tqdm(total=config.steps, desc="adapting", unit="step", disable=not progress, dynamic_ncols=True)
    start = time.perf_counter()
    for _ in range(config.steps):
        window, batch = next(batches)
        loss = _batch_loss(model, parent, window, batch, config, split)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", window=f"{window:g}s")
    bar.close()
    return losses, time.perf_counter() - start


def _batch_loss(
    model: Whisper, parent: Whisper, window: float, batch: list[Target], config: AdaptConfig, split: int
) -> torch.Tensor:
    """The targets' NLL per token for clips encoded in ``window`` (plus the KL term, when on)."""
    device = next(model.parameters()).device
    audios = [load_audio(t.audio_filepath, t.offset, t.duration) for t in batch]
    mels = log_mel_batch(audios, window, model.dims.n_mels).to(device)
    with torch.no_grad():
        hidden = encoder_bottom(model, mels, split)
    features = encoder_top(model, hidden, split)
    tokens, gold, stop = (x.to(device) for x in teacher_forcing(model, batch))
    logits = model.decoder(tokens, features)
    tok = _tokenizer(model, "en")
    loss = target_nll(logits, gold, stop, tok.eot, tok.timestamp_begin)
    if config.kl_weight > 0:
        mask = ((gold != _IGNORE) | stop).float()
        loss = loss + config.kl_weight * _kl_to_full_window(parent, audios, tokens, logits, mask, config)
    return loss


def teacher_forcing(
    model: Whisper, batch: Sequence[Target]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoder inputs and what each position must predict, in timestamp mode as the labeler decodes.

    A row is the start-of-transcript sequence, ``<|0.00|>`` and the text tokens. Returns
    ``tokens`` ``(B, L)``, ``gold`` ``(B, L)`` (the next text token, else ``_IGNORE``) and
    ``stop`` ``(B, L)``, True where the text must end: after its last token the 30 s teacher
    closed the segment with a timestamp (or ended the text), whose time the label does not keep.
    """
    rows, golds = [], []
    for t in batch:
        tok = _tokenizer(model, t.language)
        prefix = list(tok.sot_sequence)
        rows.append([*prefix, tok.timestamp_begin, *t.tokens])
        golds.append([_IGNORE] * len(prefix) + list(t.tokens) + [_IGNORE])
    width = max(len(r) for r in rows)
    eot = _tokenizer(model, "en").eot
    tokens = torch.tensor([r + [eot] * (width - len(r)) for r in rows])
    gold = torch.tensor([g + [_IGNORE] * (width - len(g)) for g in golds])
    stop = torch.zeros_like(tokens, dtype=torch.bool)
    for b, r in enumerate(rows):
        stop[b, len(r) - 1] = True
    return tokens, gold, stop


def _tokenizer(model: Whisper, language: str):
    """The labeler's tokenizer for ``language`` (an English-only model has no language token)."""
    return get_tokenizer(
        model.is_multilingual,
        num_languages=model.num_languages,
        language=language if model.is_multilingual else None,
        task="transcribe",
    )


def target_nll(
    logits: torch.Tensor, gold: torch.Tensor, stop: torch.Tensor, eot: int, timestamp_begin: int
) -> torch.Tensor:
    """Mean NLL over the target tokens and the ends of text.

    Where ``stop`` is set the text must end: the probability of end-of-text plus that of every
    timestamp token (the vocabulary's last ids, from ``timestamp_begin``).
    """
    logp = logits.float().log_softmax(-1)
    text = F.nll_loss(logp.transpose(1, 2), gold, ignore_index=_IGNORE, reduction="sum")
    ends = logp[stop]  # (B, V)
    end_lp = torch.logsumexp(torch.cat([ends[:, eot : eot + 1], ends[:, timestamp_begin:]], -1), -1)
    count = (gold != _IGNORE).sum() + stop.sum()
    return (text - end_lp.sum()) / count


def _kl_to_full_window(
    parent: Whisper,
    audios: list,
    tokens: torch.Tensor,
    logits: torch.Tensor,
    mask: torch.Tensor,
    config: AdaptConfig,
) -> torch.Tensor:
    """T^2 x KL from the parent's decoder on the 30 s window to the adapted one on the short window."""
    from ..student.module import distillation_kl  # imports lightning: only when the term is on

    with torch.no_grad():
        mels = log_mel_batch(audios, WINDOW_S, parent.dims.n_mels).to(logits.device)
        reference = parent.decoder(tokens, encode_mels(parent, mels))
    return distillation_kl(logits, reference, mask, config.temperature)


# --- the derived teacher -------------------------------------------------------------------


def save_derived(adapted: Adapted, out: str | os.PathLike) -> Path:
    """Write the adapted teacher as an openai-whisper checkpoint with its provenance (atomic).

    float32, so it decodes exactly as the model adapt returned; the parent's word-timing heads
    are kept (``alignment_heads``). ``load_teacher(out)`` and ``whisper.load_model(out)`` open it.
    """
    model, out = adapted.model, Path(out)
    state = {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    if any("lora_" in k for k in state):
        raise ValueError("the model still holds LoRA adapters: adapt() merges them before saving")
    heads = model.alignment_heads
    ckpt = {
        "dims": asdict(model.dims),
        "model_state_dict": state,
        "alignment_heads": (heads.to_dense() if heads.is_sparse else heads).bool().cpu(),
        DERIVED_KEY: adapted.derivation.to_dict(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def derivation(teacher: Teacher) -> Derivation | None:
    """The typed provenance of a derived teacher (``Teacher.derived``); None for any other.

    Raises:
        ValueError: the block is not a ``Derivation`` (a field missing or of the wrong kind).
    """
    if teacher.derived is None:
        return None
    try:
        return Derivation.from_dict(teacher.derived)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{teacher.source}: its derived-teacher provenance cannot be read ({e})") from None


# --- agreement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """How often one labeling writes what a reference labeling wrote, utterance by utterance.

    ``same`` counts utterances whose texts are equal after ``normaliser``, ``same_raw`` those
    equal as written; ``differing`` names the others (in the reference's order).
    """

    normaliser: str
    utterances: int
    same: int
    same_raw: int
    differing: tuple[str, ...]

    @property
    def fraction(self) -> float:
        """The share of utterances written alike after the normaliser."""
        return self.same / self.utterances

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the fraction."""
        return {**asdict(self), "differing": list(self.differing), "fraction": round(self.fraction, 5)}


def agreement(
    reference: str | os.PathLike | Iterable[TeacherLabel | Mapping[str, Any]],
    other: str | os.PathLike | Iterable[TeacherLabel | Mapping[str, Any]],
    normaliser: str = "whisper_en",
) -> Agreement:
    """Exact agreement of ``other``'s texts with ``reference``'s, per utterance id.

    Both are label files (JSON Lines) or records with ``id`` and ``text``. Every utterance of
    the reference is compared; ids only ``other`` has are ignored.

    Raises:
        ValueError: the reference is empty, an id of it has no label in ``other``, or the
            normaliser is unknown.
    """
    norm = get_normaliser(normaliser)
    ref, oth = _texts(reference), _texts(other)
    if not ref:
        raise ValueError("the reference holds no labels: nothing to agree with")
    missing = [i for i in ref if i not in oth]
    if missing:
        raise ValueError(
            f"{len(missing)} utterances of the reference have no label in the other (first: "
            f"{', '.join(missing[:3])}); label the same manifest with both"
        )
    differing = tuple(i for i in ref if norm(ref[i]) != norm(oth[i]))
    same_raw = sum(ref[i] == oth[i] for i in ref)
    return Agreement(normaliser, len(ref), len(ref) - len(differing), same_raw, differing)


def _texts(source) -> dict[str, str]:
    """``{id: text}`` of a label file or of label records (dicts or records)."""
    records = read_jsonl(source) if isinstance(source, (str, os.PathLike)) else source
    out = {}
    for r in records:
        d = r if isinstance(r, Mapping) else r.to_dict()
        out[str(d["id"])] = str(d.get("text") or "")
    return out


__all__ = [
    "TARGET_OPTIONS",
    "AdaptConfig",
    "Adapted",
    "AdaptationData",
    "Agreement",
    "Derivation",
    "Target",
    "TargetSet",
    "adapt",
    "agreement",
    "derivation",
    "read_targets",
    "save_derived",
    "target_nll",
    "targets",
    "teacher_forcing",
]
