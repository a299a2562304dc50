"""From a launch request to a :class:`~launcher.plan.model.LaunchPlan`: every decision, nothing run.

:mod:`.request` holds what a caller asks for, :mod:`.prepare` decides (accelerator, ranks, the rendered
config, the command each rank runs), and one module per transport in :mod:`.transports` turns that into
typed per-node commands. ``--dry-run`` prints the result.
"""
