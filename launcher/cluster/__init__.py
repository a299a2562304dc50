"""Hosts: hostfiles in DeepSpeed, Horovod and MPI formats, ``--include``/``--exclude``, and the node
lists schedulers (Slurm, PBS, LSF) hand a job. No processes, no network.
"""
