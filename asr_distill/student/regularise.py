"""Keeping a fine-tuned student's general competence: LwF, L2-SP and low-rank adapters.

A student adapted to a hard domain (accents, children) forgets what its starting model
knew. Each remedy here is one ``StudentModule`` switch, off by default:

* ``lwf_weight`` (learning without forgetting, Li & Hoiem 2016): KL from a frozen copy
  of the starting model to the student, on the batch (or its replay rows). It needs no
  labels and no teacher, so it works when the teacher's vocabulary differs.
  With ``replay_labels: false`` the replay rows feed this term only, not the cross-entropy:
  general audio then keeps the starting model's answers without its labels teaching their
  own writing style (AN4's spelled digits taught a speechocean762 student to spell "2187").
* ``l2sp_weight`` (L2-SP, Li et al. 2018): the squared distance of the trained weights to
  their starting values, rather than to zero as weight decay pulls.
* ``lora_rank`` (LoRA, Hu et al. 2021, through ``peft``): the weights stay as they were and
  low-rank adapters learn the change; ``merge_lora`` folds them back before export, so the
  exported model is a plain Whisper.

One remedy needs no retraining: ``interpolate_toward`` (WiSE-FT, Wortsman et al. 2022) keeps a
fraction of what training changed and takes the rest back to the starting weights, at export
(``export --wise-alpha``), so one trained student gives a range of trade-offs between the new
domain and the old. ``wise_swap_in`` puts the same mix in place for validation only
(``val_wise_alpha``), so the checkpoint chosen is the one whose mix is best.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch
from whisper.model import Whisper

log = logging.getLogger(__name__)

# The linear layers of a Whisper block: attention projections (self and cross) and the MLP.
LORA_TARGETS = ("query", "key", "value", "out", "mlp.0", "mlp.2")


def frozen_copy(model: Whisper) -> Whisper:
    """A detached copy of ``model`` as it is now, in eval mode with no gradients."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def trainable_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``{name: starting value}`` of every parameter that trains: the anchor of L2-SP."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def l2sp_penalty(model: torch.nn.Module, anchors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over the anchored parameters of ``||w - w0||^2``; anchors follow the weights' device."""
    total = None
    for name, p in model.named_parameters():
        w0 = anchors.get(name)
        if w0 is None:
            continue
        if w0.device != p.device:
            w0 = anchors[name] = w0.to(p.device)
        d = (p.float() - w0.float()).pow(2).sum()
        total = d if total is None else total + d
    if total is None:
        raise ValueError("l2sp_weight > 0 but no parameter trains: nothing to anchor")
    return total


def interpolate_toward(model: torch.nn.Module, start: torch.nn.Module, alpha: float) -> int:
    """Set each weight to ``w0 + alpha * (w - w0)`` (``w0`` from ``start``); returns how many moved.

    ``alpha`` 1 keeps the trained model, 0 gives back the start. Parameters must match in
    name and shape: interpolating between different architectures means nothing.

    Raises:
        ValueError: ``alpha`` outside [0, 1], or a parameter ``start`` lacks or shapes otherwise.
    """
    reference = dict(start.named_parameters())
    for name, p in model.named_parameters():
        w0 = reference.get(name)
        if w0 is None or w0.shape != p.shape:
            raise ValueError(f"the starting model has no parameter {name} of shape {tuple(p.shape)}")
    return _mix(model, reference, alpha)


def _mix(model: torch.nn.Module, start: dict[str, torch.Tensor], alpha: float) -> int:
    """``w0 + alpha * (w - w0)`` in place for the parameters ``start`` names; how many moved."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"wise_alpha must be in [0, 1], got {alpha}")
    moved = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            w0 = start.get(name)
            if w0 is None:
                continue
            w0 = w0.to(device=p.device, dtype=p.dtype)
            if not torch.equal(p, w0):
                p.copy_(w0 + alpha * (p - w0))
                moved += 1
    return moved


def average_into(model: torch.nn.Module, others: list[torch.nn.Module]) -> int:
    """Set each weight of ``model`` to the mean of its own and ``others``' (a uniform model soup).

    Students fine-tuned from one start on the same labels stay in one basin, so their mean
    is a model too; it keeps what they share and averages out what each seed's run did
    alone. Returns how many tensors were averaged.

    Raises:
        ValueError: another model lacks a parameter or shapes it otherwise.
    """
    refs = [dict(o.named_parameters()) for o in others]
    params = list(model.named_parameters())
    for name, p in params:
        for ref in refs:
            if name not in ref or ref[name].shape != p.shape:
                raise ValueError(f"cannot average: a student lacks {name} of shape {tuple(p.shape)}")
    with torch.no_grad():
        for name, p in params:
            total = p.detach().clone()
            for ref in refs:
                total += ref[name].to(device=p.device, dtype=p.dtype)
            p.copy_(total / (len(refs) + 1))
    return len(params)


def wise_swap_in(
    model: torch.nn.Module, start: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """Put the WiSE-FT mix with ``start`` (a ``trainable_snapshot``) in place; returns what it replaced.

    For validating the model an export with ``wise_alpha`` will write; ``restore_weights``
    undoes it exactly (the replaced tensors are copies, not a reverse mix that rounding would spoil).
    """
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if n in start}
    _mix(model, start, alpha)
    return trained


def restore_weights(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Copy ``saved`` (from ``wise_swap_in``) back into ``model``'s parameters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in saved:
                p.copy_(saved[name])


def lwf_rows(batch: dict, n: int, device: torch.device) -> torch.Tensor:
    """Rows ``(B,)`` the LwF term is taken on: the replay rows when the batch marks any, else all.

    Replay items are general-domain speech: there the student should still answer as
    its starting model did; in-domain rows are free to move.
    """
    replay = batch.get("replay")
    if replay is not None:
        replay = torch.as_tensor(replay, dtype=torch.bool, device=device)
        if replay.any():
            return replay
    return torch.ones(n, dtype=torch.bool, device=device)


def label_rows(batch: dict, n: int, replay_labels: bool, device: torch.device) -> torch.Tensor:
    """Rows ``(B,)`` whose labels train (cross-entropy, KL to the teacher): all, or none of the replay rows.

    ``replay_labels`` false leaves the replay rows to the LwF term alone.
    """
    replay = batch.get("replay")
    if replay_labels or replay is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    return ~torch.as_tensor(replay, dtype=torch.bool, device=device)


def _peft():
    try:
        import peft
    except ImportError as e:
        raise ImportError(
            "lora_rank > 0 needs the peft library: pip install 'asr_distill[adapt]' (or pip install peft)"
        ) from e
    return peft


def lora_target_names(
    model: Whisper, targets: Sequence[str], encoder_blocks: Sequence[int], decoder: bool = True
) -> list[str]:
    """Full names of the linear layers to adapt: every decoder block's, and the listed encoder blocks'.

    ``targets`` end a layer's name inside its block (``attn.query``, ``cross_attn.out``,
    ``mlp.0``): ``"query"`` adapts self- and cross-attention queries alike. ``decoder=False``
    leaves the decoder out (a teacher adapting its encoder only keeps its decoder as it is).
    """
    if not targets:
        raise ValueError("lora_targets is empty: name at least one of " + ", ".join(LORA_TARGETS))
    scopes = [f"decoder.blocks.{i}." for i in range(len(model.decoder.blocks))] if decoder else []
    scopes += [f"encoder.blocks.{i}." for i in encoder_blocks]
    names = []
    for name, module in model.named_modules():
        scope = next((s for s in scopes if name.startswith(s)), None)
        if scope is None or not isinstance(module, torch.nn.Linear):
            continue
        inner = name[len(scope) :]
        if any(inner == t or inner.endswith("." + t) for t in targets):
            names.append(name)
    if not names:
        raise ValueError(f"lora_targets {list(targets)} match no linear layer; use names from {LORA_TARGETS}")
    return names


def add_lora(
    model: Whisper,
    rank: int,
    alpha: float,
    targets: Sequence[str],
    encoder_blocks: Sequence[int],
    decoder: bool = True,
) -> list[str]:
    """Freeze ``model`` and inject rank-``rank`` adapters into its target layers (in place).

    Returns the adapted layers' names. Only the adapters train; ``B`` starts at zero, so
    the adapted model starts exactly where ``model`` was.
    """
    if rank < 1:
        raise ValueError(f"lora_rank must be >= 1 to add adapters, got {rank}")
    if alpha <= 0:
        raise ValueError(f"lora_alpha must be > 0, got {alpha}")
    names = lora_target_names(model, targets, encoder_blocks, decoder)
    peft = _peft()
    model.requires_grad_(False)
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=names, lora_dropout=0.0, bias="none")
    peft.inject_adapter_in_model(config, model)
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    log.info("LoRA rank %d on %d linear layers (%s)", rank, len(names), ", ".join(targets))
    return names


def merge_lora(model: torch.nn.Module) -> int:
    """Fold every LoRA adapter into its base weight and put the plain layer back; returns how many.

    After this the model's ``state_dict`` has openai-whisper's keys again, so the export
    writes a file ``whisper.load_model`` opens unchanged. A model without adapters is left as is.
    """
    layers = [(n, m) for n, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]
    for name, layer in layers:
        layer.merge()
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, layer.get_base_layer())
    return len(layers)
