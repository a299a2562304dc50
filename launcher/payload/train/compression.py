"""Compression while training: quantization-aware training and pruning of a Llama's decoder layers.

DeepSpeed's compression library (``compression_training``, ``init_compression``, ``redundancy_clean``) is
gone from DeepSpeed 0.19 (deepspeedai/DeepSpeed#8489: its config block is refused), so this uses torch's
own parts: ``torch.nn.utils.parametrize`` puts the mask and the fake quantization on each weight, the masks
are computed by ``torch.nn.utils.prune``'s L1 and Ln-structured methods, and the quantization is torch's
``fake_quantize_per_channel_affine`` (symmetric, one scale per output row, straight-through gradient).
``bake`` plays ``redundancy_clean``'s part: the weights become plain tensors holding their compressed values.
"""

from __future__ import annotations

import math

import torch
from torch.nn.utils import parametrize, prune

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


class FakeQuantize(torch.nn.Module):
    """A weight as ``bits``-bit integers times one scale per output row (symmetric), gradients straight through."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        levels = 2 ** (self.bits - 1) - 1
        scale = (weight.detach().abs().amax(dim=1) / levels).clamp_min(1e-12).float()
        zero = torch.zeros(weight.shape[0], dtype=torch.int32, device=weight.device)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -levels, levels)


class Mask(torch.nn.Module):
    """A fixed boolean mask on a weight (pruned entries stay zero, and get no gradient). It is a buffer, so it is
    saved with the model; every rank computes the same one, so DDP need not broadcast it."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


class Compressor:
    """Applies a rendered ``compression`` block to a model: masks at ``prune_offset``, bits at the offsets."""

    def __init__(self, settings: dict, model: torch.nn.Module):
        self.settings, self.layers = settings, list(model.model.layers)
        self.heads = model.config.num_attention_heads
        self.masks: list[tuple[torch.nn.Linear, Mask, bool]] = []  # (linear, its mask, by head): ones until pruned
        for layer in self.layers:
            pruned = [*((linear, False) for linear in _linears(layer, MLP) if settings["sparsity"]),
                      *([(layer.self_attn.o_proj, True)] if settings["head_sparsity"] else [])]
            self.masks += [(linear, _parametrize(linear, Mask(torch.ones_like(linear.weight, dtype=torch.bool))),
                            by_head) for linear, by_head in pruned]
        bits = settings["weight_bits"]
        self.quantizers = [_parametrize(linear, FakeQuantize(settings["start_bits"])) for layer in self.layers
                           for linear in _linears(layer, ATTENTION + MLP)] if bits else []

    def before_step(self, step: int) -> None:
        """Called before optimizer step ``step`` (0-based) on every rank: the schedule's changes happen here."""
        s = self.settings
        for quantizer in self.quantizers:  # from the step, so a resumed run quantizes as the one it continues
            quantizer.bits = s["weight_bits"] if step >= s["quantize_offset"] else s["start_bits"]
        if step == s["prune_offset"]:
            for linear, mask, by_head in self.masks:
                mask.mask.copy_(self._mask_for(linear.parametrizations.weight.original.detach(), by_head))

    def _mask_for(self, weight: torch.Tensor, by_head: bool) -> torch.Tensor:
        """From the weights as trained so far (identical on every rank): whole heads, or L1 magnitude."""
        if by_head:
            return _head_mask(weight, self.heads, self.settings["head_sparsity"]).bool()
        return prune.L1Unstructured(self.settings["sparsity"]).compute_mask(weight, torch.ones_like(weight)).bool()

    def bake(self) -> dict:
        """Make every compressed weight a plain tensor holding its compressed value; what was achieved."""
        for layer in self.layers:
            for linear in _linears(layer, ATTENTION + MLP):
                if parametrize.is_parametrized(linear, "weight"):
                    parametrize.remove_parametrizations(linear, "weight", leave_parametrized=True)
        return achieved(self.layers, self.heads, bits=bool(self.quantizers))


def achieved(layers: list[torch.nn.Module], heads: int, bits: bool = True) -> dict:
    """Sparsity of the MLP, heads left with any weight and (``bits``: after QAT) the bits: log2 of the most
    distinct values in any row."""
    mlp = [linear.weight.detach() for layer in layers for linear in _linears(layer, MLP)]
    zeros = sum(int((w == 0).sum()) for w in mlp) / sum(w.numel() for w in mlp)
    kept = [int(_head_norms(layer.self_attn.o_proj.weight.detach(), heads).gt(0).sum()) for layer in layers]
    found = {"mlp_sparsity": round(zeros, 4), "heads_kept": kept, "heads": heads}
    if bits:
        rows = max(torch.unique(row).numel() for layer in layers for linear in _linears(layer, ATTENTION + MLP)
                   for row in linear.weight.detach())
        found["weight_bits"] = round(math.log2(rows), 2)
    return found


def _linears(layer: torch.nn.Module, names: tuple[str, ...]) -> list[torch.nn.Linear]:
    parts = {**dict(layer.self_attn.named_children()), **dict(layer.mlp.named_children())}
    return [parts[name] for name in names]


def _parametrize(linear: torch.nn.Linear, module: torch.nn.Module) -> torch.nn.Module:
    parametrize.register_parametrization(linear, "weight", module, unsafe=True)
    return module


def _head_norms(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """L2 norm of each head's columns of an output projection (hidden × heads·head_dim)."""
    return weight.reshape(weight.shape[0], heads, -1).transpose(0, 1).reshape(heads, -1).norm(dim=1)


def _head_mask(weight: torch.Tensor, heads: int, fraction: float) -> torch.Tensor:
    """The o_proj mask that zeroes the columns of the weakest ``fraction`` of heads (Ln-structured over heads;
    at least one head is kept)."""
    per_head = weight.reshape(weight.shape[0], heads, -1).transpose(0, 1).reshape(heads, -1)
    amount = min(round(fraction * heads), heads - 1)
    mask = prune.LnStructured(amount, n=2, dim=0).compute_mask(per_head, torch.ones_like(per_head))
    return mask.reshape(heads, weight.shape[0], -1).transpose(0, 1).reshape(weight.shape)
