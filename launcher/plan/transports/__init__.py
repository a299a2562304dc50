"""One module per transport; each turns a :class:`~.common.ClusterContext` into a LaunchPlan and runs nothing.

``PLANNERS`` is the transport registry: ``--launcher NAME`` picks one entry.
"""

from __future__ import annotations

from collections.abc import Callable

from ..model import LaunchPlan
from .common import ClusterContext
from .horovodrun import plan_horovodrun
from .local import plan_local
from .openmpi import plan_openmpi
from .slurm import plan_slurm
from .ssh import plan_pdsh, plan_ssh
from .torchrun import plan_torchrun

PLANNERS: dict[str, Callable[[ClusterContext], LaunchPlan]] = {
    "local": plan_local, "ssh": plan_ssh, "pdsh": plan_pdsh, "openmpi": plan_openmpi, "slurm": plan_slurm,
    "horovodrun": plan_horovodrun, "torchrun": plan_torchrun,
}
LAUNCHERS = tuple(PLANNERS)  # the --launcher choices
MULTI_HOST = ("ssh", "pdsh", "openmpi", "slurm", "horovodrun", "torchrun")  # hosts from a hostfile or scheduler
