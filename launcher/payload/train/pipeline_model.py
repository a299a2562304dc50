"""The Llama model as a flat list of layers, for DeepSpeed's ``PipelineModule``.

Each decoder layer recomputes its rotary embeddings from the hidden states' shape, so only the
hidden states travel between stages (DeepSpeed pipelines pass tensors, not tuples of objects).
"""

from __future__ import annotations

import torch
from torch import nn


class Embed(nn.Module):
    """Pipeline stage piece: the token embeddings of the LM."""

    def __init__(self, embed_tokens: nn.Embedding):
        super().__init__()
        self.embed_tokens = embed_tokens

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(input_ids)


class Decoder(nn.Module):
    """Pipeline stage piece: one decoder layer of the LM, with the rotary embedding it needs."""

    def __init__(self, layer: nn.Module, rotary: nn.Module):
        super().__init__()
        self.layer, self.rotary = layer, rotary

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        return self.layer(hidden, attention_mask=None, position_embeddings=self.rotary(hidden, positions))


class Head(nn.Module):
    """Pipeline stage piece: the final norm and the LM head, producing logits."""

    def __init__(self, norm: nn.Module, lm_head: nn.Linear):
        super().__init__()
        self.norm, self.lm_head = norm, lm_head

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm(hidden))


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross entropy; labels are the inputs shifted by one (done by the data loader)."""
    return nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))


def layers_of(model) -> list[nn.Module]:
    """Embedding, each decoder layer, final norm + head: weights shared with ``model``."""
    inner = model.model
    return [Embed(inner.embed_tokens), *(Decoder(layer, inner.rotary_emb) for layer in inner.layers),
            Head(inner.norm, model.lm_head)]
