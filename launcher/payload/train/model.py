"""Causal LMs from transformers configs (Llama-style), byte-level vocabulary, no downloads."""

from __future__ import annotations

from dataclasses import dataclass

VOCAB_SIZE = 256  # bytes


@dataclass(frozen=True)
class Preset:
    """A named model size: the Llama config's shape and its default sequence length."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    seq_len: int


PRESETS = {
    "tiny": Preset(hidden=192, layers=4, heads=6, kv_heads=6, intermediate=512, seq_len=128),  # ~1.9 M params
    "125m": Preset(hidden=768, layers=12, heads=12, kv_heads=12, intermediate=2048, seq_len=1024),
    "350m": Preset(hidden=1024, layers=24, heads=16, kv_heads=16, intermediate=2816, seq_len=1024),
    "1b": Preset(hidden=2048, layers=22, heads=32, kv_heads=4, intermediate=5632, seq_len=2048),
}


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
