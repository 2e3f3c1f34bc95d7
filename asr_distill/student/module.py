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
from .short_context import WindowPolicy

log = logging.getLogger(__name__)


def greedy_decode(
    model: Whisper, features: torch.Tensor, prefix: list[int], eot: int, max_new: int
) -> list[list[int]]:
    """Greedy text tokens for ``features`` ``(B, T, d)``; timestamps and specials are never chosen.

    For validation WER. Uses Whisper's key/value cache and projects only the newest
    position onto the vocabulary: a student that still loops costs ``max_new`` cheap
    steps, not ``max_new`` full passes over a growing sequence. Exported students decode
    with the labeler's ``decode_batch`` instead.
    """
    b = features.shape[0]
    tokens = torch.tensor([prefix] * b, device=features.device)
    done = torch.zeros(b, dtype=torch.bool, device=features.device)
    cache, hooks = model.install_kv_cache_hooks()
    try:
        step_in = tokens
        for _ in range(max_new):
            logits = model.decoder(step_in, features, kv_cache=cache)[:, -1].float()
            logits[:, eot + 1 :] = -math.inf
            nxt = torch.where(done, torch.full_like(done, eot, dtype=torch.long), logits.argmax(-1))
            tokens = torch.cat([tokens, nxt[:, None]], 1)
            done |= nxt == eot
            if done.all():
                break
            step_in = nxt[:, None]
    finally:
        for h in hooks:
            h.remove()
    out = []
    for row in tokens[:, len(prefix) :].tolist():
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
    ):
        super().__init__()
        if ce_weight < 0 or kl_weight < 0 or ce_weight + kl_weight == 0:
            raise ValueError(f"need ce_weight, kl_weight >= 0 and not both 0, got {ce_weight}, {kl_weight}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.save_hyperparameters()
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
        for p in self.model.encoder.parameters():
            p.requires_grad_(not frozen_encoder)
        self.model.decoder.token_embedding.weight.requires_grad_(not freeze_token_embedding)
        lang = language if model.is_multilingual else None
        self.tokenizer = get_tokenizer(
            model.is_multilingual, num_languages=model.num_languages, language=lang, task="transcribe"
        )
        self.prefix = list(self.tokenizer.sot_sequence_including_notimestamps)
        self._encoder_sha: str | None = None
        self._val: list[tuple[str, str]] = []
        self.label_provenance: dict | None = None

    # -- what the data and the export need ------------------------------------------------
    def feature_spec(self) -> FeatureSpec:
        """What the data module needs to build this student's inputs; the encoder hash keys the cache."""
        if self._encoder_sha is None:
            self._encoder_sha = encoder_sha(self.model)
        return FeatureSpec(
            self.model,
            self._encoder_sha,
            self.tokenizer,
            tuple(self.prefix),
            self.policy,
            self.hparams.frozen_encoder,
        )

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
            "layout": asdict(self.layout),
            "teacher": self.teacher_info,
            "training_config": dict(self.hparams),
            "label_provenance": self.label_provenance,
        }

    # -- Lightning hooks --------------------------------------------------------------------
    def on_fit_start(self) -> None:
        """Move the teacher to the training device and keep the labels' provenance for the export."""
        if self._teacher is not None:
            self._teacher.to(self.device)
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
        if self._teacher is not None:
            self._teacher.to(self.device)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the self-description, so a checkpoint loads with no other input."""
        checkpoint["asr_distill"] = self.describe()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the labels' provenance, which is not a hyperparameter."""
        self.label_provenance = checkpoint.get("asr_distill", {}).get("label_provenance")

    def _features(self, batch: dict) -> torch.Tensor:
        if "features" in batch:
            return batch["features"].to(self.dtype_for_features())
        return encode_mels(self.model, batch["mel"])

    def dtype_for_features(self) -> torch.dtype:
        """The decoder's dtype: cached encoder outputs are cast to it."""
        return next(self.model.decoder.parameters()).dtype

    def shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        """The loss for one batch, the same for every stage, logged under ``stage``.

        ``ce_weight`` x CE on the pseudo-label tokens, plus ``kl_weight`` x KL to the teacher's
        logits ``(B, L, V)`` when distilling; for ``val`` also decodes greedily for the WER.
        """
        feats = self._features(batch)
        logits = self.model.decoder(batch["tokens"], feats)  # (B, L, V)
        targets = batch["targets"]
        ce = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE)
        loss = self.hparams.ce_weight * ce
        n = len(batch["texts"])
        self.log(f"{stage}/ce", ce, prog_bar=stage == "train", batch_size=n, sync_dist=stage != "train")
        if self._teacher is not None and self.hparams.kl_weight > 0:
            with torch.no_grad():
                t_feats = feats if self._shared_encoder else encode_mels(self._teacher, batch["mel"])
                t_logits = self._teacher.decoder(batch["tokens"], t_feats.to(feats.dtype))
            kl = distillation_kl(logits, t_logits, (targets != IGNORE).float(), self.hparams.temperature)
            loss = loss + self.hparams.kl_weight * kl
            self.log(f"{stage}/kl", kl, batch_size=n, sync_dist=stage != "train")
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=n, sync_dist=stage != "train")
        if stage == "val":
            tok = self.tokenizer
            hyps = greedy_decode(self.model, feats, self.prefix, tok.eot, self.hparams.val_max_tokens)
            self._val += [(ref, tok.decode(h).strip()) for ref, h in zip(batch["texts"], hyps, strict=True)]
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """The shared step's loss, logged under ``train/``."""
        return self.shared_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """The shared step's loss, plus greedy hypotheses for the epoch's WER."""
        return self.shared_step(batch, "val")

    def on_validation_epoch_start(self) -> None:
        """Start the epoch's (reference, hypothesis) pairs afresh."""
        self._val = []

    def on_validation_epoch_end(self) -> None:
        """Log ``val/wer`` over the epoch, under the normaliser the student is measured with."""
        if not self._val:
            return
        r = word_error_rate([a for a, _ in self._val], [b for _, b in self._val], self.hparams.normaliser)
        self.log("val/wer", r.wer, prog_bar=True, sync_dist=True)

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
