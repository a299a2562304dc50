"""What the forward pass keeps for the backward pass, per rank, from the model's shapes.

Counted tensor by tensor from what autograd saves in the transformers implementation the payload runs
(sdpa attention), in the spirit of Korthikanti et al. (Megatron's sbh(34 + 5as/h) without the
attention-score term that sdpa removes). Three ways to compute, by bytes per element:

- ``half``: 16-bit weights (DeepSpeed bf16/fp16). Each RMSNorm upcasts its input to fp32 (HF's
  LlamaRMSNorm) and keeps that copy, the normalized 16-bit value and its output.
- ``autocast``: fp32 weights under autocast (DDP, Horovod with bf16/fp16). The residual stream stays fp32;
  every linear keeps its own 16-bit cast of its input, and autocast caches a 16-bit copy of every weight.
- ``fp32``: everything in 4 bytes.

Per token and layer (h hidden, k key/value width, f FFN width), in bytes:
``half`` 20h + 4k + 8f, ``autocast`` 30h + 4k + 8f, ``fp32`` 32h + 8k + 16f for Llama-style layers;
GPT-2's (fused qkv, LayerNorm, gelu_new keeping four FFN-wide tensors) 19h + 10f, 23h + 10f, 39h + 20f.
Dropout (GPT-2's configs default to 0.1) adds the residual dropouts' masks and outputs (7h, 2h in fp32);
attention dropout costs nothing more on GPUs, whose fused sdpa kernels keep only an RNG state, but on CPU
ranks sdpa falls back to kept probabilities, about 12 bytes per head and position per token (measured,
torch 2.13).

In a Llama layer attention keeps the rotated q and k, v, and its output (whose transpose back is already
contiguous, so the output projection's input is no copy); each norm keeps its input, the normalized value
and its output (half: an fp32 copy of the input instead); the MLP keeps gate, SiLU(gate), up and their
product. With activation checkpointing a layer keeps only its input, and one layer is recomputed at a
time. The loss keeps fp32 log-probabilities over the vocabulary (4V per token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..spec.models import ModelShape
from . import Workload

Mode = Literal["half", "autocast", "fp32"]
# bytes per token for the (hidden, kv width, ffn) terms of one layer, by family and mode
LAYER_TERMS: dict[str, dict[str, tuple[int, int, int]]] = {
    "llama": {"half": (20, 4, 8), "autocast": (30, 4, 8), "fp32": (32, 8, 16)},
    "gpt2": {"half": (19, 0, 10), "autocast": (23, 0, 10), "fp32": (39, 0, 20)},  # fused qkv; gelu_new keeps 4
}
CPU_DROPOUT_SCORES = 12  # bytes per token, head and position: attention probabilities sdpa keeps on CPU
DROPOUT_HIDDEN = {"half": 7, "autocast": 7, "fp32": 2}  # residual dropouts' masks and outputs, per h (measured)
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
    micro_batch: int
    seq_len: int
    mode: Mode
    checkpointing: bool = False
    cpu: bool = False  # CPU ranks (attention dropout costs more there)

    @classmethod
    def of(cls, work: Workload, mode: Mode, checkpointing: bool) -> Activations:
        return cls(work.model, work.micro_batch, work.seq_len, mode, checkpointing, work.cpu)

    @property
    def tokens(self) -> int:
        return self.micro_batch * self.seq_len

    def layer(self) -> int:
        """Bytes one decoder layer keeps for its backward pass."""
        m = self.model
        h_term, k_term, f_term = LAYER_TERMS[m.family][self.mode]
        per_token = h_term * m.hidden + k_term * m.kv_heads * m.head_dim + f_term * m.ffn
        if m.attention_dropout:
            per_token += DROPOUT_HIDDEN[self.mode] * m.hidden
        if m.attention_dropout and self.cpu:  # CPU sdpa has no fused dropout: the probabilities are kept
            per_token += CPU_DROPOUT_SCORES * m.heads * self.seq_len
        return int(per_token * self.tokens)

    def layers(self, count: int) -> int:
        """``count`` layers; with checkpointing, their inputs plus one layer recomputed at a time."""
        if not self.checkpointing:
            return count * self.layer()
        return count * RESIDUAL_BYTES[self.mode] * self.model.hidden * self.tokens + self.layer()

    def stored(self, count: int, in_flight: int) -> int:
        """``count`` layers holding ``in_flight`` micro batches (pipeline stages); one recompute at a time."""
        if not self.checkpointing:
            return in_flight * count * self.layer()
        return in_flight * count * RESIDUAL_BYTES[self.mode] * self.model.hidden * self.tokens + self.layer()

    def head(self) -> int:
        """The final norm and the loss's fp32 log-probabilities."""
        return (NORM_BYTES[self.mode] * self.model.hidden + 4 * self.model.vocab) * self.tokens

    def weight_cache(self) -> int:
        """autocast's 16-bit copy of every weight, alive from the first forward op to the end of backward."""
        if self.mode != "autocast":
            return 0
        m = self.model
        cast = m.params() - m.embedding_params() - (2 * m.layers + 1) * m.norm_params  # what matmuls read
        return 2 * (cast + m.vocab * m.hidden * m.tied)  # a tied head is cast from the embedding

    def total(self) -> int:
        """The whole model on one rank."""
        return self.layers(self.model.layers) + self.head() + self.weight_cache()

    def loss_backward(self) -> int:
        """The gradient of the logits as backward starts: fp32, and its cast back to the compute type."""
        return (4 + compute_bytes(self.mode)) * self.model.vocab * self.tokens
