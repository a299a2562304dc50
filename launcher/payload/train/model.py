"""Causal LMs from transformers configs (Llama-style), byte-level vocabulary, no downloads."""

from __future__ import annotations

from ...spec.models import PRESETS, VOCAB_SIZE


def llama_config(preset: str, seq_len: int | None = None):
    """A ``LlamaConfig`` for a preset; sdpa attention (causal without an explicit mask)."""
    from transformers import LlamaConfig

    p = PRESETS[preset]
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE, hidden_size=p.hidden, intermediate_size=p.intermediate,
        num_hidden_layers=p.layers, num_attention_heads=p.heads, num_key_value_heads=p.kv_heads,
        max_position_embeddings=seq_len or p.seq_len, tie_word_embeddings=False, use_cache=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    config._attn_implementation = "sdpa"
    return config


def build_model(preset: str, seq_len: int | None = None, seed: int = 0):
    """The same initial weights on every rank for a given seed."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config(preset, seq_len))


def count_parameters(model) -> int:
    """Full parameter count, also under ZeRO-3 (whose partitioned parameters report numel 0)."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
