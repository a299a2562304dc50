"""One module per transport; each turns a launch request into a LaunchPlan and runs nothing."""

LAUNCHERS = ("local", "ssh", "pdsh", "openmpi", "slurm", "horovodrun", "torchrun")  # the --launcher choices
