"""ds_keys.TOP_LEVEL_KEYS re-derived from the installed DeepSpeed: the keys its config parser looks up."""

from __future__ import annotations

import pytest

from launcher.render import Cluster, render
from launcher.render.deepspeed_check import parse
from launcher.render.ds_keys import TOP_LEVEL_KEYS
from launcher.spec import engines
from launcher.spec.catalog import load_strategy, names

pytestmark = pytest.mark.slow
# DeepSpeedConfig reads it only when no mpu is given (HF's zero.init path); the check always passes one.
READ_WITHOUT_AN_MPU = {"sequence_parallel_size"}


def keys_deepspeed_reads() -> set[str]:
    """Every top-level key DeepSpeedConfig asks for, over the catalog (bf16, fp32, ZeRO 0-3, pipeline)."""
    seen: set[str] = set()
    for name in names():
        strategy = load_strategy(name)
        if not engines.get(strategy.engine).native_config:
            continue
        for precision in ("bf16", "fp32"):
            rendered = render(load_strategy(name, [f"training.precision={precision}"]), Cluster(8, 8))
            seen |= parse(rendered.config, 8, rendered.data_parallel_size)
    return seen


def test_the_frozen_list_is_what_deepspeed_reads():
    assert keys_deepspeed_reads() | READ_WITHOUT_AN_MPU == TOP_LEVEL_KEYS
