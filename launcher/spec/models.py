"""Decoder-only LM shapes: the payload's presets and any Hugging Face ``config.json``, counted without torch.

A :class:`ModelShape` is what memory depends on: layers, hidden size, heads and KV heads (GQA), head size,
FFN width and whether it is gated (SwiGLU) or not (GELU), vocabulary, tied embeddings, learned positions,
biases. Parameter counts are exact for the families below; ``tests/test_models.py`` checks them against the
real transformers model built on torch's meta device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import StrategyError

VOCAB_SIZE = 256  # the payload's byte-level vocabulary


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


@dataclass(frozen=True)
class ModelShape:
    """The shape of a decoder-only LM, as memory sees it; invariant: every size is positive."""

    name: str
    family: str  # "llama" (Llama, Mistral, Qwen2: RMSNorm, rotary, SwiGLU) or "gpt2" (LayerNorm, GELU)
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    seq_len: int  # the default sequence length (max positions for learned-position models)
    tied: bool = False
    qkv_bias: bool = False
    out_bias: bool = False  # o_proj / attention c_proj
    mlp_bias: bool = False
    positions: int = 0  # learned position embeddings (GPT-2's wpe); 0 for rotary
    attention_dropout: bool = False  # dropout on attention probabilities while training

    @property
    def gated(self) -> bool:
        return self.family == "llama"

    @property
    def norm_params(self) -> int:
        """One norm's parameters: RMSNorm has a weight, LayerNorm a weight and a bias."""
        return self.hidden if self.family == "llama" else 2 * self.hidden

    def attention_params(self) -> int:
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        weights = self.hidden * (q + 2 * kv) + q * self.hidden
        return weights + (q + 2 * kv) * self.qkv_bias + self.hidden * self.out_bias

    def mlp_params(self) -> int:
        matrices = 3 if self.gated else 2
        biases = (self.ffn * (matrices - 1) + self.hidden) * self.mlp_bias
        return matrices * self.hidden * self.ffn + biases

    def layer_params(self) -> int:
        return self.attention_params() + self.mlp_params() + 2 * self.norm_params

    def embedding_params(self) -> int:
        return self.vocab * self.hidden + self.positions * self.hidden

    def head_params(self) -> int:
        """The LM head (none of its own when tied to the embeddings)."""
        return 0 if self.tied else self.vocab * self.hidden

    def params(self) -> int:
        """Every parameter, counted once (tied weights once)."""
        return (self.embedding_params() + self.layers * self.layer_params() + self.norm_params
                + self.head_params())

    def tensors(self) -> list[int]:
        """The element count of every parameter tensor (tied weights once), in no particular order."""
        q, kv, h = self.heads * self.head_dim, self.kv_heads * self.head_dim, self.hidden
        norms = [h] * (1 if self.family == "llama" else 2)
        attention = [h * q, h * kv, h * kv, q * h] if self.family == "llama" else [h * 3 * q, q * h]
        attention += ([q, kv, kv] if self.family == "llama" else [3 * q]) * self.qkv_bias + [h] * self.out_bias
        mlp = [h * self.ffn] * (3 if self.gated else 2) + ([self.ffn] * (2 if self.gated else 1) + [h]) * self.mlp_bias
        layer = [*norms, *attention, *norms, *mlp]
        embeddings = [self.vocab * h] + [self.positions * h] * bool(self.positions)
        return [*embeddings, *layer * self.layers, *norms, *[self.vocab * h] * (not self.tied)]

    def largest_tensor(self) -> int:
        """The largest single parameter tensor: ZeRO-3 gathers at least this much at once."""
        return max(self.tensors())


def preset(name: str) -> ModelShape:
    """One of the payload's presets (a Llama with the byte-level vocabulary)."""
    if name not in PRESETS:
        raise StrategyError(f"unknown model preset '{name}' (known: {', '.join(PRESETS)}; or a config.json)")
    p = PRESETS[name]
    return ModelShape(name=name, family="llama", vocab=VOCAB_SIZE, hidden=p.hidden, layers=p.layers,
                      heads=p.heads, kv_heads=p.kv_heads, head_dim=p.hidden // p.heads, ffn=p.intermediate,
                      seq_len=p.seq_len)


def resolve(model: str) -> ModelShape:
    """A preset name, or the path of a Hugging Face ``config.json`` (or a folder holding one)."""
    if model in PRESETS:
        return preset(model)
    path = Path(model)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise StrategyError(f"--model {model}: neither a preset ({', '.join(PRESETS)}) nor a config.json")
    return from_hf_config(_read_json(path), name=str(model))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StrategyError(f"{path}: not a readable JSON config ({exc})") from None
    if not isinstance(data, dict):
        raise StrategyError(f"{path}: a config.json holds an object, not {type(data).__name__}")
    return data


LLAMA_LIKE = {"llama": (False, False), "mistral": (False, False), "qwen2": (True, False)}  # (qkv bias, out bias)


def from_hf_config(config: dict, name: str = "config.json") -> ModelShape:
    """The shape of a decoder-only LM from its transformers config (Llama, Mistral, Qwen2, GPT-2)."""
    kind = config.get("model_type")
    if not isinstance(kind, str):
        raise StrategyError(f"{name}: model_type must be a string naming the architecture, not {kind!r}")
    if kind == "gpt2":
        return _gpt2(config, name)
    if kind not in LLAMA_LIKE:
        known = ", ".join([*LLAMA_LIKE, "gpt2"])
        raise StrategyError(f"{name}: model_type {kind!r} is not a decoder-only LM launchdeck can count "
                            f"(known: {known})")
    return _llama_like(config, name, kind)


def _llama_like(config: dict, name: str, kind: str) -> ModelShape:
    hidden, heads = _positive(config, name, "hidden_size"), _positive(config, name, "num_attention_heads")
    qkv_bias, out_bias = LLAMA_LIKE[kind]
    if kind == "llama":
        qkv_bias = out_bias = bool(config.get("attention_bias", False))
    return _checked(ModelShape(
        name=name, family="llama", vocab=_positive(config, name, "vocab_size"), hidden=hidden,
        layers=_positive(config, name, "num_hidden_layers"), heads=heads,
        kv_heads=_positive(config, name, "num_key_value_heads", heads),
        head_dim=_positive(config, name, "head_dim", hidden // heads),
        ffn=_positive(config, name, "intermediate_size"),
        seq_len=min(_positive(config, name, "max_position_embeddings", 2048), 4096),
        tied=bool(config.get("tie_word_embeddings", False)), qkv_bias=qkv_bias, out_bias=out_bias,
        mlp_bias=bool(config.get("mlp_bias", False)), attention_dropout=_rate(config, "attention_dropout", 0.0) > 0))


def _gpt2(config: dict, name: str) -> ModelShape:
    hidden, heads = _positive(config, name, "n_embd", 768), _positive(config, name, "n_head", 12)
    positions = _positive(config, name, "n_positions", 1024)
    return _checked(ModelShape(
        name=name, family="gpt2", vocab=_positive(config, name, "vocab_size", 50257), hidden=hidden,
        layers=_positive(config, name, "n_layer", 12), heads=heads, kv_heads=heads, head_dim=hidden // heads,
        ffn=_positive(config, name, "n_inner", 4 * hidden), seq_len=positions,
        tied=bool(config.get("tie_word_embeddings", True)), qkv_bias=True, out_bias=True, mlp_bias=True,
        positions=positions, attention_dropout=_rate(config, "attn_pdrop", 0.1) > 0))


def _positive(config: dict, name: str, key: str, default: int | None = None) -> int:
    value = config.get(key)
    value = default if value is None else value
    if value is None:
        raise StrategyError(f"{name}: {key} is missing (a decoder-only LM config names it)")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise StrategyError(f"{name}: {key} must be a positive integer, not {value!r}")
    return value


def _rate(config: dict, key: str, default: float) -> float:
    value = config.get(key, default)
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise StrategyError(f"{key} must be a probability in [0, 1), not {value!r}")
    return float(value)


def _checked(shape: ModelShape) -> ModelShape:
    if shape.heads % shape.kv_heads:
        raise StrategyError(f"{shape.name}: {shape.heads} attention heads do not split into "
                            f"{shape.kv_heads} key/value heads")
    if shape.family == "gpt2" and shape.hidden % shape.heads:
        raise StrategyError(f"{shape.name}: hidden size {shape.hidden} is not divisible by {shape.heads} heads")
    return shape
