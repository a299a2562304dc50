"""launchdeck: named distributed-training strategies, rendered and launched for real.

Importing this package must stay cheap: no torch, no deepspeed at module level anywhere
on the path of ``launchdeck --help`` and ``launchdeck render``.
"""

__version__ = "0.1.0"



def progress(step: int, *, begin: bool = False, saving: bool = False) -> None:
    """Tell launchdeck's stall watch where this rank is: it finished ``step`` (call it every step);
    ``begin=True``: it starts ``step``; ``saving=True``: it finished ``step`` and now saves a checkpoint,
    which is not judged until the next call. One ``pwrite``; a no-op outside a launchdeck job.
    See :mod:`launcher.node.progress`."""
    from .node import progress as records

    records.report(step, begin=begin, saving=saving)
