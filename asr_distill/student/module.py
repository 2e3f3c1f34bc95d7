"""The student LightningModule: one shared step, CE on pseudo-labels plus KL to the teacher.

Loss = ``ce_weight`` x cross-entropy on the pseudo-label tokens + ``kl_weight`` x T^2 x
KL(teacher || student) at temperature T. Defaults 0.8 / 1.0 / T=2 are Distil-Whisper's:
the KL term carries the teacher's whole distribution (its doubts, its alternatives),
which is most of what a 2-layer decoder can learn from a few hundred clips, and T=2
softens it so that the rank of the runners-up counts; T^2 keeps its gradient on the
CE's scale. Teacher logits are computed online from the same encoder outputs when the
student kept the teacher's encoder (then they are nearly free: no extra encoder pass).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from whisper.model import Whisper
from whisper.tokenizer import get_tokenizer

from .. import __version__
from ..features import encode_mels
from ..metrics import word_error_rate
from ..teacher import load_teacher
from .build import cut_student, encoder_shared, pretrained_student, same_tokenizer
from .data import IGNORE, FeatureSpec, encoder_sha
from .encoder_split import bottom_sha, encoder_bottom, encoder_top
from .regularise import (
    LORA_TARGETS,
    add_lora,
    frozen_copy,
    interpolate_toward,
    l2sp_penalty,
    label_rows,
    lwf_rows,
    merge_lora,
    restore_weights,
    trainable_snapshot,
    wise_swap_in,
)
from .short_context import WindowPolicy

log = logging.getLogger(__name__)


def greedy_decode(
    model: Whisper,
    features: torch.Tensor,
    prefix: list[int],
    eot: int,
    max_new: int,
    timestamp_begin: int | None = None,
) -> list[list[int]]:
    """Greedy text tokens for ``features`` ``(B, T, d)``; specials are never chosen.

    For validation WER. Uses Whisper's key/value cache and projects only the newest
    position onto the vocabulary: a student that still loops costs ``max_new`` cheap
    steps, not ``max_new`` full passes over a growing sequence. Exported students decode
    with the labeler's ``decode_batch`` instead. With ``timestamp_begin`` (a student trained
    on timestamped segments) the segment opens at ``<|0.00|>`` and its closing timestamp
    ends the text; without it timestamps are never chosen.
    """
    b = features.shape[0]
    opened = [timestamp_begin] if timestamp_begin is not None else []
    tokens = torch.tensor([prefix + opened] * b, device=features.device)
    start = tokens.shape[1]
    done = torch.zeros(b, dtype=torch.bool, device=features.device)
    cache, hooks = model.install_kv_cache_hooks()
    try:
        step_in = tokens
        for _ in range(max_new):
            logits = model.decoder(step_in, features, kv_cache=cache)[:, -1].float()
            logits[:, eot + 1 : timestamp_begin] = -math.inf
            nxt = logits.argmax(-1)
            if timestamp_begin is not None:
                nxt = torch.where(nxt >= timestamp_begin, torch.full_like(nxt, eot), nxt)
            nxt = torch.where(done, torch.full_like(nxt, eot), nxt)
            tokens = torch.cat([tokens, nxt[:, None]], 1)
            done |= nxt == eot
            if done.all():
                break
            step_in = nxt[:, None]
    finally:
        for h in hooks:
            h.remove()
    out = []
    for row in tokens[:, start:].tolist():
        out.append(row[: row.index(eot)] if eot in row else row)
    return out


def distillation_kl(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, temperature: float):
    """T^2 x KL(teacher_T || student_T), averaged over the unmasked positions ``(B, L)``."""
    t = temperature
    s_logp = F.log_softmax(student.float() / t, -1)
    t_logp = F.log_softmax(teacher.float() / t, -1)
    kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1) * t * t


def _student(teacher: Whisper, init: str, decoder_layers: int, encoder_layers: list[int] | None):
    """The student and its layout: cut from the teacher's layers, or another model ``init`` names."""
    if init == "teacher":
        return cut_student(teacher, decoder_layers, encoder_layers)
    start = load_teacher(init)
    source = f"{start.name} ({start.weights_sha256[:12]})"
    return pretrained_student(start.model, teacher, source)


def _check_distillable(
    student: Whisper, teacher: Whisper, init: str, name: str, frozen_unshared_encoder: bool
) -> None:
    """Refuse a KL term the pair cannot compute, naming the setting to change.

    ``frozen_unshared_encoder``: the student's encoder is frozen but is not the teacher's whole
    encoder, so the cached outputs the KL reuses for the teacher would be the wrong ones.
    """
    if not same_tokenizer(student, teacher):
        raise ValueError(
            f"kl_weight > 0 needs one vocabulary, but the student ({init}) and teacher "
            f"({name}) tokenise differently: set kl_weight: 0 or init: teacher"
        )
    if frozen_unshared_encoder:
        raise ValueError(
            "KL with a frozen encoder reuses the cached outputs for the teacher, so the "
            "student must keep the teacher's whole encoder: set encoder_layers: null, "
            "frozen_encoder: false, or kl_weight: 0"
        )


def _check_switches(hp: dict) -> None:
    """Refuse loss weights and anti-forgetting settings that cannot work, naming the setting."""
    if hp["ce_weight"] < 0 or hp["kl_weight"] < 0 or hp["ce_weight"] + hp["kl_weight"] == 0:
        raise ValueError(
            f"need ce_weight, kl_weight >= 0 and not both 0, got {hp['ce_weight']}, {hp['kl_weight']}"
        )
    if hp["temperature"] <= 0:
        raise ValueError(f"temperature must be > 0, got {hp['temperature']}")
    for name in ("lwf_weight", "l2sp_weight", "lora_rank", "train_encoder_layers"):
        if hp[name] < 0:
            raise ValueError(f"{name} must be >= 0, got {hp[name]}")
    if not hp["replay_labels"] and hp["lwf_weight"] <= 0:
        raise ValueError(
            "replay_labels: false leaves the replay rows to learning without forgetting, but "
            f"lwf_weight is {hp['lwf_weight']}: set lwf_weight > 0 (e.g. 1.0) or replay_labels: true"
        )
    if not 0.0 <= hp["val_wise_alpha"] <= 1.0:
        raise ValueError(f"val_wise_alpha must be in [0, 1], got {hp['val_wise_alpha']}")
    if hp["val_wise_alpha"] < 1.0 and hp["lora_rank"] > 0:
        raise ValueError(
            "val_wise_alpha mixes weights with their start, but with lora_rank > 0 only the adapters "
            "train and the mix happens after merging them at export: set val_wise_alpha: 1.0"
        )
    if not hp["train_decoder"]:
        if hp["frozen_encoder"] and not hp["train_encoder_layers"]:
            raise ValueError(
                "train_decoder: false with a frozen encoder and train_encoder_layers: 0 trains nothing: "
                "set train_encoder_layers > 0, frozen_encoder: false or train_decoder: true"
            )
        if hp["lora_rank"] > 0 and not hp["train_encoder_layers"]:
            raise ValueError(
                "lora_rank > 0 with train_decoder: false puts adapters on the trained encoder blocks "
                "only, and train_encoder_layers is 0: set train_encoder_layers > 0 or train_decoder: true"
            )
    if hp["train_encoder_layers"] and not hp["frozen_encoder"]:
        raise ValueError(
            "train_encoder_layers trains the top blocks of a frozen encoder, but frozen_encoder is "
            "false (the whole encoder trains): set frozen_encoder: true or train_encoder_layers: 0"
        )


def _set_trainable(
    model: Whisper,
    frozen_encoder: bool,
    top_blocks: int,
    freeze_token_embedding: bool,
    train_decoder: bool = True,
) -> int | None:
    """Choose what trains; returns how many bottom encoder blocks stay frozen (None: all encoder trains).

    With a frozen encoder, ``top_blocks`` > 0 trains its top blocks and ``ln_post``: accents and
    children's voices may need the acoustic side to move, and the top is where it is cheapest.
    ``train_decoder`` false keeps the decoder (the model's sense of what text is likely) as it began.
    """
    n = model.dims.n_audio_layer
    if top_blocks > n:
        raise ValueError(f"train_encoder_layers is {top_blocks}, but the student's encoder has {n} blocks")
    model.encoder.requires_grad_(not frozen_encoder)
    split = n - top_blocks if frozen_encoder else None
    if split is not None and split < n:
        model.encoder.blocks[split:].requires_grad_(True)
        model.encoder.ln_post.requires_grad_(True)
    model.decoder.requires_grad_(train_decoder)
    model.decoder.token_embedding.weight.requires_grad_(train_decoder and not freeze_token_embedding)
    return split


def _tokenizer_and_prefix(model: Whisper, language: str, timestamps: bool):
    """The student's tokenizer and the tokens every target starts with (timestamp mode or not)."""
    lang = language if model.is_multilingual else None
    tok = get_tokenizer(
        model.is_multilingual, num_languages=model.num_languages, language=lang, task="transcribe"
    )
    return tok, list(tok.sot_sequence if timestamps else tok.sot_sequence_including_notimestamps)


class StudentModule(L.LightningModule):
    """A compact Whisper learning from a teacher's pseudo-labels (and its distribution).

    Args:
        teacher: the teacher (``load_teacher`` name or path); its labels are the targets.
        init: ``"teacher"`` to cut the student from the teacher's layers, or a
            ``load_teacher`` name/path (e.g. ``"tiny.en"``) to start from that model.
        decoder_layers: decoder layers kept from the teacher (maximally spaced).
        encoder_layers: teacher encoder layers kept (None: all).
        frozen_encoder: train the decoder only, on cached encoder outputs.
        ce_weight, kl_weight, temperature: the loss (see the module docstring).
        lr, weight_decay, warmup_steps: AdamW with linear warm-up, then linear decay to 10%.
        freeze_token_embedding: keep the (tied) token embedding fixed: it is most of the
            decoder's parameters and a few hundred clips only teach it to overfit.
        short_context, window_step_s, window_margin_s, min_window_s: the ``WindowPolicy``
            the student trains and decodes with.
        normaliser: for validation WER.
        language: decoding language for multilingual students.
        val_max_tokens: greedy validation stops after this many tokens.
        train_encoder_layers: with ``frozen_encoder``, also train the top N encoder blocks (and
            ``ln_post``); the data caches the frozen blocks' output, the student runs the rest.
        lwf_weight: learning without forgetting: weight of T^2 x KL from a frozen copy of the
            starting model (``init``) to the student, on the batch's replay rows if it marks any.
        replay_labels: the replay rows also train on their labels (cross-entropy); false: they
            feed only the LwF term, so general audio keeps the starting model's answers and
            its labels' writing style is not taught (needs ``lwf_weight`` > 0).
        l2sp_weight: weight of the squared distance of the trained weights to their start.
        timestamps: learn each label as one timestamped segment (``<|0.00|> text <|end|>``, the
            clip's end) and decode in Whisper's timestamp mode, as Whisper itself is decoded:
            tiny.en loses 1.8 points on AN4 test without timestamps (4.80% vs 3.03%).
        lora_targets, lora_rank, lora_alpha: low-rank adapters (``peft``) on the decoder's (unless
            ``train_decoder`` is false) and the trained encoder blocks' linear layers named by
            ``lora_targets`` (None: all of
            ``regularise.LORA_TARGETS``); only the adapters train; export merges them.
        val_wise_alpha: validate the WiSE-FT mix that an export with this ``wise_alpha`` will
            write (``w0 + a * (w - w0)``), not the raw weights: checkpoints and early stopping are
            then judged on the model that ships. 1 validates the trained weights as they are.
        train_decoder: false trains the encoder only (``train_encoder_layers`` or an unfrozen
            encoder): the decoder, which holds what text the model expects (spelled letters,
            digits), stays the starting model's while the acoustic side adapts.
    """

    def __init__(
        self,
        teacher: str = "base",
        init: str = "teacher",
        decoder_layers: int = 2,
        encoder_layers: list[int] | None = None,
        frozen_encoder: bool = True,
        ce_weight: float = 0.8,
        kl_weight: float = 1.0,
        temperature: float = 2.0,
        lr: float = 3e-4,
        weight_decay: float = 0.01,
        warmup_steps: int = 50,
        freeze_token_embedding: bool = True,
        short_context: bool = True,
        window_step_s: float = 1.0,
        window_margin_s: float = 0.5,
        min_window_s: float = 2.0,
        normaliser: str = "format_insensitive",
        language: str = "en",
        val_max_tokens: int = 64,
        train_encoder_layers: int = 0,
        lwf_weight: float = 0.0,
        replay_labels: bool = True,
        l2sp_weight: float = 0.0,
        lora_targets: list[str] | None = None,
        lora_rank: int = 0,
        lora_alpha: float = 16.0,
        timestamps: bool = False,
        val_wise_alpha: float = 1.0,
        train_decoder: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters()
        _check_switches(self.hparams)
        self.policy = WindowPolicy(short_context, window_step_s, window_margin_s, min_window_s)
        t = load_teacher(teacher)
        model, layout = _student(t.model, init, decoder_layers, encoder_layers)
        self.model, self.layout = model.train(), layout  # Whisper has no dropout; train() for Lightning
        self.teacher_info = {
            "name": t.name,
            "weights_sha256": t.weights_sha256,
            "source": t.source,
            "params": layout.teacher_params,
        }
        log.info("%s", layout.describe())
        self._shared_encoder = encoder_shared(model, t.model)
        if kl_weight > 0:
            _check_distillable(model, t.model, init, teacher, frozen_encoder and not self._shared_encoder)
        # Not a submodule: the teacher stays out of the checkpoint, the optimizer and model summaries.
        object.__setattr__(self, "_teacher", t.model.eval().requires_grad_(False) if kl_weight > 0 else None)
        self._setup_training(model)
        self.tokenizer, self.prefix = _tokenizer_and_prefix(model, language, timestamps)
        self._encoder_sha: str | None = None
        self._val: list[tuple[str, str, str]] = []  # (validation set, reference, hypothesis)
        self.label_provenance: dict | None = None
        self.wise_alpha = 1.0  # the fraction of training's change kept at export (WiSE-FT)
        self.soup_of: list[str] = []  # the checkpoints averaged into this one at export (a soup)

    def _setup_training(self, model: Whisper) -> None:
        """What trains, and the frozen references the anti-forgetting terms compare against.

        The starting copy (LwF) and the anchors (L2-SP) are taken before any step, and again
        on a resume, where ``__init__`` runs before the checkpoint's weights are loaded.
        """
        hp = self.hparams
        # Not a submodule either: the starting model is rebuilt from ``init``, never saved.
        object.__setattr__(self, "_start", frozen_copy(model) if hp.lwf_weight > 0 else None)
        self._split = _set_trainable(
            model, hp.frozen_encoder, hp.train_encoder_layers, hp.freeze_token_embedding, hp.train_decoder
        )
        if hp.lora_rank > 0:
            n = model.dims.n_audio_layer
            blocks = range(n if self._split is None else self._split, n)
            targets = hp.lora_targets or LORA_TARGETS
            add_lora(model, hp.lora_rank, hp.lora_alpha, targets, blocks, decoder=hp.train_decoder)
        self._anchors = trainable_snapshot(model) if hp.l2sp_weight > 0 else None
        # The start of the WiSE-FT mix that validation judges (what training may change, as it began).
        self._wise_start = trainable_snapshot(model) if hp.val_wise_alpha < 1.0 else None
        self._trained: dict[str, torch.Tensor] | None = None  # raw weights while validation holds the mix

    def merge_adapters(self) -> int:
        """Fold LoRA adapters into the weights (before export); returns how many layers had one."""
        return merge_lora(self.model)

    def interpolate_to_start(self, alpha: float) -> int:
        """Keep ``alpha`` of what training changed (WiSE-FT); returns how many tensors moved.

        The starting model is rebuilt from ``teacher`` and ``init`` as training built it, so
        call this on merged weights (``merge_adapters`` first).
        """
        hp = self.hparams
        start, _ = _student(load_teacher(hp.teacher).model, hp.init, hp.decoder_layers, hp.encoder_layers)
        return interpolate_toward(self.model, start, alpha)

    # -- what the data and the export need ------------------------------------------------
    def feature_spec(self) -> FeatureSpec:
        """What the data module needs to build this student's inputs; the encoder hash keys the cache.

        With top encoder blocks training, the data caches the frozen bottom's hidden states
        (``cache_through_block``), keyed by that part's weights only.
        """
        split, n = self._split, self.model.dims.n_audio_layer
        partial = split is not None and split < n
        if self._encoder_sha is None:
            self._encoder_sha = bottom_sha(self.model, split) if partial else encoder_sha(self.model)
        args = (self.model, self._encoder_sha, self.tokenizer, tuple(self.prefix), self.policy)
        ts = self.hparams.timestamps
        if not partial:
            return FeatureSpec(*args, self.hparams.frozen_encoder, timestamps=ts)
        if "cache_through_block" in FeatureSpec.__dataclass_fields__:
            return FeatureSpec(*args, True, cache_through_block=split, timestamps=ts)
        # no cache of hidden states: log-mels, the bottom runs here
        return FeatureSpec(*args, False, timestamps=ts)

    def describe(self) -> dict[str, Any]:
        """The self-description exported checkpoints carry."""
        return {
            "toolkit_version": __version__,
            "dims": asdict(self.model.dims),
            "tokenizer": {
                "multilingual": self.model.is_multilingual,
                "num_languages": self.model.num_languages,
                "language": self.hparams.language,
                "task": "transcribe",
                "prefix": self.prefix,
            },
            "normaliser": self.hparams.normaliser,
            "window_policy": asdict(self.policy),
            "timestamps": self.hparams.timestamps,
            "layout": asdict(self.layout),
            "teacher": self.teacher_info,
            "training_config": dict(self.hparams),
            "label_provenance": self.label_provenance,
            "wise_alpha": self.wise_alpha,
            "soup_of": self.soup_of,
        }

    # -- Lightning hooks --------------------------------------------------------------------
    def _move_references(self) -> None:
        for m in (self._teacher, self._start):
            if m is not None:
                m.to(self.device)

    def on_fit_start(self) -> None:
        """Move the teacher to the training device and keep the labels' provenance for the export."""
        self._move_references()
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "provenance"):
            self.label_provenance = dm.provenance()

    def configure_callbacks(self):
        """A ``last.ckpt`` after every epoch (Lightning's can lag), so a resume loses at most one."""
        from .checkpoint_io import LatestCheckpoint

        return [LatestCheckpoint()]

    def on_train_start(self) -> None:
        """Log the starting step: after a resume it is the checkpoint's, proving the count continued."""
        if self.trainer.is_global_zero:
            log.info("training from global step %d (epoch %d)", self.global_step, self.current_epoch)

    def on_validation_start(self) -> None:
        """Move the teacher along: validation can run before any training (e.g. ``validate``)."""
        self._move_references()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the self-description, so a checkpoint loads with no other input."""
        checkpoint["asr_distill"] = self.describe()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the labels' provenance, which is not a hyperparameter."""
        self.label_provenance = checkpoint.get("asr_distill", {}).get("label_provenance")

    def _encoder_input(self, batch: dict) -> torch.Tensor:
        """What enters the encoder's trained part: cached outputs or hidden states, or log-mels.

        Log-mels given to a partly frozen encoder go through its frozen part here, without
        gradients, so its backward pass is never paid for.
        """
        if "features" in batch:
            return batch["features"].to(self.dtype_for_features())
        split, mel = self._split, batch["mel"]
        if split is None:
            return mel
        with torch.no_grad():
            if split == self.model.dims.n_audio_layer:
                return encode_mels(self.model, mel)
            return encoder_bottom(self.model, mel, split)

    def _encode(self, model: Whisper, x: torch.Tensor) -> torch.Tensor:
        """``model``'s encoder output ``(B, T, d)`` from ``_encoder_input``'s ``x``."""
        split = self._split
        if split is None:
            return encode_mels(model, x)
        if split == model.dims.n_audio_layer:
            return x
        return encoder_top(model, x, split)

    def dtype_for_features(self) -> torch.dtype:
        """The decoder's dtype: cached encoder outputs are cast to it."""
        return next(self.model.decoder.parameters()).dtype

    def _teacher_kl(self, batch: dict, feats: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor):
        """KL to the teacher; a teacher sharing the student's encoder reuses the student's outputs."""
        with torch.no_grad():
            t_feats = feats if self._shared_encoder else encode_mels(self._teacher, batch["mel"])
            t_logits = self._teacher.decoder(batch["tokens"], t_feats.to(feats.dtype))
        return distillation_kl(logits, t_logits, mask, self.hparams.temperature)

    def _lwf(self, batch: dict, x: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Learning without forgetting: KL from the frozen starting model to the student.

        Taken on the replay rows when the batch marks any (``lwf_rows``); the starting model
        runs its own encoder top on the same input, so encoder drift counts too.
        """
        rows = lwf_rows(batch, logits.shape[0], logits.device)
        with torch.no_grad():
            s_feats = self._encode(self._start, x[rows])
            s_logits = self._start.decoder(batch["tokens"][rows], s_feats.to(logits.dtype))
        return distillation_kl(logits[rows], s_logits, mask[rows], self.hparams.temperature)

    def _loss_terms(self, batch: dict, x: torch.Tensor, feats: torch.Tensor, logits: torch.Tensor) -> dict:
        """Each weighted term of the loss by name (``ce``, and ``kl``, ``lwf``, ``l2sp`` when on)."""
        hp, targets = self.hparams, batch["targets"]
        mask = (targets != IGNORE).float()
        labeled = label_rows(batch, targets.shape[0], hp.replay_labels, targets.device)
        label_targets = targets.masked_fill(~labeled[:, None], IGNORE)
        ce = F.cross_entropy(
            logits.float().transpose(1, 2), label_targets, ignore_index=IGNORE, reduction="sum"
        )  # a mean over the label tokens that is 0, not NaN, in a batch of replay rows only
        terms = {"ce": (hp.ce_weight, ce / (label_targets != IGNORE).sum().clamp(min=1))}
        if self._teacher is not None and hp.kl_weight > 0:
            terms["kl"] = (hp.kl_weight, self._teacher_kl(batch, feats, logits, mask * labeled[:, None]))
        if self._start is not None:
            terms["lwf"] = (hp.lwf_weight, self._lwf(batch, x, logits, mask))
        if self._anchors is not None:
            terms["l2sp"] = (hp.l2sp_weight, l2sp_penalty(self.model, self._anchors))
        return terms

    def shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        """The loss for one batch, the same for every stage, logged under ``stage``.

        ``ce_weight`` x CE on the pseudo-label tokens, plus the weighted KL to the teacher's
        logits ``(B, L, V)``, LwF and L2-SP terms when they are on (``_loss_terms``); for
        ``val`` also decodes greedily for the WER.
        """
        x = self._encoder_input(batch)
        feats = self._encode(self.model, x)
        logits = self.model.decoder(batch["tokens"], feats)  # (B, L, V)
        terms = self._loss_terms(batch, x, feats, logits)
        loss = sum(w * v for w, v in terms.values())
        n, sync = len(batch["texts"]), stage != "train"
        for name, (_, value) in terms.items():
            self.log(
                f"{stage}/{name}",
                value,
                prog_bar=name == "ce" and stage == "train",
                batch_size=n,
                sync_dist=sync,
            )
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=n, sync_dist=sync)
        if stage == "val":
            tok = self.tokenizer
            begin = tok.timestamp_begin if self.hparams.timestamps else None
            hyps = greedy_decode(self.model, feats, self.prefix, tok.eot, self.hparams.val_max_tokens, begin)
            sets = batch.get("sets") or [""] * n
            pairs = zip(sets, batch["texts"], hyps, strict=True)
            self._val += [(name, ref, tok.decode(h).strip()) for name, ref, h in pairs]
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """The shared step's loss, logged under ``train/``."""
        return self.shared_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """The shared step's loss, plus greedy hypotheses for the epoch's WER."""
        return self.shared_step(batch, "val")

    def on_validation_epoch_start(self) -> None:
        """Start the epoch's (reference, hypothesis) pairs afresh; swap in the WiSE-FT mix if asked."""
        self._val = []
        if self._wise_start is not None and self._trained is None:
            self._trained = wise_swap_in(self.model, self._wise_start, self.hparams.val_wise_alpha)

    def on_validation_epoch_end(self) -> None:
        """Log ``val/wer`` over the epoch, and ``val/wer_<set>`` per named validation set.

        ``val/wer`` (all sets together: in-domain and general speech) is what checkpoints are
        chosen on; the per-set figures show what was gained and what was forgotten. They are
        rank 0's share only: ranks may hold different sets, and a sync over keys some ranks
        lack would hang. The trained weights come back here, before the checkpoint callbacks
        run (``on_validation_end``), so a checkpoint never holds the validation mix.
        """
        try:
            self._log_val_wer()
        finally:
            if self._trained is not None:
                restore_weights(self.model, self._trained)
                self._trained = None

    def _log_val_wer(self) -> None:
        if not self._val:
            return
        norm = self.hparams.normaliser
        r = word_error_rate([ref for _, ref, _ in self._val], [hyp for _, _, hyp in self._val], norm)
        self.log("val/wer", r.wer, prog_bar=True, sync_dist=True)
        names = sorted({name for name, _, _ in self._val if name})
        if not names or not self.trainer.is_global_zero:
            return
        for name in names:
            pairs = [(ref, hyp) for s, ref, hyp in self._val if s == name]
            wer = word_error_rate([a for a, _ in pairs], [b for _, b in pairs], norm).wer
            self.log(f"val/wer_{name}", wer, rank_zero_only=True)

    def configure_optimizers(self):
        """AdamW on the trainable parameters, linear warm-up then linear decay to 10% of ``lr``."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self.trainer else 1000
        warm = self.hparams.warmup_steps

        def schedule(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return max(0.1, 1.0 - 0.9 * (step - warm) / max(1, total - warm))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
