"""What the forward pass keeps for the backward pass, per rank, from the model's shapes.

Counted tensor by tensor from what autograd saves in the transformers implementation the payload runs
(sdpa attention, no dropout), in the spirit of Korthikanti et al. (Megatron's sbh(34 + 5as/h) without the
attention-score term that sdpa removes). Three ways to compute, by bytes per element:

- ``half``: 16-bit weights (DeepSpeed bf16/fp16). Each RMSNorm upcasts its input to fp32 (HF's
  LlamaRMSNorm) and keeps that copy, the normalized 16-bit value and its output.
- ``autocast``: fp32 weights under autocast (DDP, Horovod with bf16/fp16). The residual stream stays fp32;
  every linear keeps its own 16-bit cast of its input, and autocast caches a 16-bit copy of every weight.
- ``fp32``: everything in 4 bytes.

Per token and layer (h hidden, k key/value width, f FFN width), in bytes:
``half`` 20h + 4k + 8f, ``autocast`` 30h + 4k + 8f, ``fp32`` 32h + 8k + 16f (SwiGLU; GELU MLPs count 2 of
the 4 FFN tensors). Attention keeps the rotated q and k, v, and its output (whose transpose back is already
contiguous, so the output projection's input is no copy); each norm keeps its input, the normalized value and
its output (half: an fp32 copy of the input instead); the MLP keeps gate, SiLU(gate), up and their
product. With activation checkpointing a layer keeps only its input, and one layer is recomputed at a
time. The loss keeps fp32 log-probabilities over the vocabulary (4V per token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..spec.models import ModelShape

Mode = Literal["half", "autocast", "fp32"]
# bytes per token for (hidden, kv width, ffn) terms of one layer, by mode
LAYER_TERMS: dict[str, tuple[int, int, int]] = {"half": (20, 4, 8), "autocast": (30, 4, 8), "fp32": (32, 8, 16)}
NORM_BYTES = {"half": 8, "autocast": 10, "fp32": 12}  # the final norm, per hidden element
RESIDUAL_BYTES = {"half": 2, "autocast": 4, "fp32": 4}  # a checkpointed layer's saved input


def mode_of(precision: str, weights_16bit: bool) -> Mode:
    """How a step computes: 16-bit weights, fp32 weights under autocast, or plain fp32."""
    if precision == "fp32":
        return "fp32"
    return "half" if weights_16bit else "autocast"


def compute_bytes(mode: Mode) -> int:
    """Bytes per element of what the matmuls produce."""
    return 4 if mode == "fp32" else 2


@dataclass(frozen=True)
class Activations:
    """Per-rank activation memory of one micro batch: the saved tensors and the loss's transients."""

    model: ModelShape
    tokens: int  # micro batch × sequence length
    mode: Mode
    checkpointing: bool = False

    def layer(self) -> int:
        """Bytes one decoder layer keeps for its backward pass."""
        m = self.model
        h_term, k_term, f_term = LAYER_TERMS[self.mode]
        ffn_tensors = 1.0 if m.gated else 0.5  # GELU MLPs keep fewer FFN-wide tensors than SwiGLU
        per_token = h_term * m.hidden + k_term * m.kv_heads * m.head_dim + f_term * ffn_tensors * m.ffn
        return int(per_token * self.tokens)

    def layers(self, count: int) -> int:
        """``count`` layers; with checkpointing, their inputs plus one layer recomputed at a time."""
        if not self.checkpointing:
            return count * self.layer()
        return count * RESIDUAL_BYTES[self.mode] * self.model.hidden * self.tokens + self.layer()

    def head(self) -> int:
        """The final norm and the loss's fp32 log-probabilities."""
        return (NORM_BYTES[self.mode] * self.model.hidden + 4 * self.model.vocab) * self.tokens

    def weight_cache(self) -> int:
        """autocast's 16-bit copy of every weight, alive from the first forward op to the end of backward."""
        return 2 * self.model.params() if self.mode == "autocast" else 0

    def total(self) -> int:
        """The whole model on one rank."""
        return self.layers(self.model.layers) + self.head() + self.weight_cache()

    def loss_backward(self) -> int:
        """The gradient of the logits as backward starts: fp32, and its cast back to the compute type."""
        return (4 + compute_bytes(self.mode)) * self.model.vocab * self.tokens
