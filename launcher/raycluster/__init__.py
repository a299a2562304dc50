"""Running a plan on a Ray cluster: the driver that starts one Ray worker per rank (Ray Train's
``TorchTrainer``, or Horovod's ``RayExecutor``), what each worker runs, and the cluster check.

Only :mod:`.job` is imported by the plan layer (stdlib only); everything else imports ``ray`` and runs as
its own program (``python -m launcher.raycluster.driver`` / ``.check``), so no other command pays for Ray.
"""
