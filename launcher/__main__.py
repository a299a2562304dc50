"""``python -m launcher`` is ``launchdeck``."""

from .cli import main

main()
