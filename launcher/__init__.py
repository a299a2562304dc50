"""launchdeck: named distributed-training strategies, rendered and launched for real.

Importing this package must stay cheap: no torch, no deepspeed at module level anywhere
on the path of ``launchdeck --help`` and ``launchdeck render``.
"""

__version__ = "0.1.0"


def progress(step: int) -> None:
    """Tell launchdeck's stall watch that this rank finished ``step`` (a no-op outside a launchdeck job).

    One ``pwrite`` of a small record: call it every step. See :mod:`launcher.node.progress`."""
    from .node import progress as records

    records.report(step)
