"""torch DistributedDataParallel: the baseline every sharded strategy is compared with."""

from __future__ import annotations

from ..strategy import DDP
from . import EngineSpec

SPEC = EngineSpec(
    name="ddp",
    description="torch DistributedDataParallel",
    renderer="launcher.render.ddp:render",
    estimator="launcher.estimate.dataparallel:ddp",
    sections=frozenset({"ddp"}),
    defaults={"ddp": DDP()},
    payload="launcher.payload.train.engines.ddp",
)
