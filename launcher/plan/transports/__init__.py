"""One module per transport; each turns a :class:`~.common.ClusterContext` into a LaunchPlan and runs nothing.

``PLANNERS`` is the transport registry (``--launcher NAME`` picks one entry); a planner's module is imported
only when it plans, so listing the choices costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..model import LaunchPlan
    from .common import ClusterContext

PLANNERS = {  # transport -> "module:function" planning it
    "local": "local:plan_local",
    "ssh": "ssh:plan_ssh",
    "pdsh": "ssh:plan_pdsh",
    "openmpi": "openmpi:plan_openmpi",
    "slurm": "slurm:plan_slurm",
    "horovodrun": "horovodrun:plan_horovodrun",
    "torchrun": "torchrun:plan_torchrun",
    "ray": "ray:plan_ray",
}
LAUNCHERS = tuple(PLANNERS)  # the --launcher choices


def planner(transport: str) -> Callable[[ClusterContext], LaunchPlan]:
    """The planning function of ``transport`` (one of :data:`LAUNCHERS`)."""
    module, _, function = PLANNERS[transport].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)
