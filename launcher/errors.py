"""One error family. The CLI turns any of these into one line on stderr and exit code 2."""

OUT_OF_MEMORY_EXIT = 18  # a payload rank that ran out of device (or host) memory exits with this code
CHECKPOINT_EXIT = 20  # a payload rank that could not write a checkpoint (disk full, read-only) exits with this
STALLED_EXIT = 19  # launchdeck launch, when the job stopped making progress and was stopped for it
MEANINGS = {OUT_OF_MEMORY_EXIT: "out of memory", CHECKPOINT_EXIT: "a checkpoint could not be written"}


class LaunchdeckError(Exception):
    """Base class: a problem with the user's input or environment, never a bug of ours."""


class StrategyError(LaunchdeckError):
    """A strategy file, an override or the catalog itself is invalid."""


class RenderError(LaunchdeckError):
    """A valid strategy cannot be rendered for the requested cluster (batch arithmetic, precision...)."""


class ConfigCheckError(RenderError):
    """DeepSpeed's own config parser rejected a rendered config."""
