"""torch DistributedDataParallel: the baseline every sharded strategy is compared with."""

from __future__ import annotations

from ..strategy import DDP
from . import EngineSpec, Knob

SPEC = EngineSpec(
    name="ddp",
    description="torch DistributedDataParallel",
    renderer="launcher.render.ddp:render",
    estimator="launcher.estimate.dataparallel:ddp",
    tunable={"ddp.bucket_cap_mb": Knob(1, 200)},
    sections=frozenset({"ddp", "compression"}),
    defaults={"ddp": DDP()},
    payload="launcher.payload.train.engines.ddp",
)
