"""launchdeck: named distributed-training strategies, rendered and launched for real.

Importing this package must stay cheap: no torch, no deepspeed at module level anywhere
on the path of ``launchdeck --help`` and ``launchdeck render``.
"""

__version__ = "0.1.0"
