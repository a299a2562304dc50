"""The modules launchdeck starts as programs (``python -m MODULE``), here and on every host.

The one place their paths are written: plans, the executor, preflight and tests take them from here.
"""

AGENT = "launcher.node.agent"  # the watchdog around each node's torchrun (or each rank under mpirun)
PROBE = "launcher.node.probe"  # one JSON line of what a host can run (preflight, doctor)
REAP = "launcher.node.reap"  # kills a frozen agent's tree on its host
STACKS = "launcher.node.stacks"  # dumps every rank's stack on its host (a stalled job)
PAYLOAD = "launcher.payload.train"  # the training payload every rank runs
ALLREDUCE = "launcher.payload.allreduce"  # the doctor's tiny all-reduce job
RAY_DRIVER = "launcher.raycluster.driver"  # the Ray driver of a --launcher ray job (this machine)
RAY_CHECK = "launcher.raycluster.check"  # can the Ray cluster run the job (preflight, doctor)
CLI = "launcher"  # `python -m launcher` is `launchdeck` (sbatch scripts call it so)
