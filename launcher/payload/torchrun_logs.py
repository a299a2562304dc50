"""torchrun plugin (entry point ``torchrun.logs_specs: launchdeck``): flat per-rank log files.

``logs/rank{R}.log`` (stdout), ``logs/rank{R}.err.log`` (stderr) and ``logs/rank{R}.error.json``
(torch elastic's error file), named by global rank, instead of torch's nested default layout; a worker group
torchrun restarted (an elastic plan's ``--max-restarts``) writes into ``logs/restart-K/``.
Loaded by torchrun only (it imports torch).
"""

from __future__ import annotations

import os

from torch.distributed.elastic.multiprocessing.api import LogsDest, LogsSpecs, Std, to_map


class RankLogsSpecs(LogsSpecs):
    """torchrun's log layout for launchdeck: ``logs/rank{R}.log`` / ``.err.log`` by global rank."""

    def __init__(self, log_dir: str | None = None, redirects: Std | dict[int, Std] = Std.ALL,
                 tee: Std | dict[int, Std] = Std.NONE, local_ranks_filter: set[int] | None = None) -> None:
        if not log_dir:
            raise ValueError("launchdeck logs need --log-dir")
        os.makedirs(log_dir, exist_ok=True)
        super().__init__(log_dir, redirects, tee, local_ranks_filter)

    @property
    def root_log_dir(self) -> str:
        return str(self._root_log_dir)

    def reify(self, envs: dict[int, dict[str, str]]) -> LogsDest:
        tee, dest = to_map(self._tee, len(envs)), LogsDest()
        for local_rank, env in envs.items():
            base = self._base(env.get("RANK", str(local_rank)))
            dest.stdouts[local_rank], dest.stderrs[local_rank] = f"{base}.log", f"{base}.err.log"
            dest.error_files[local_rank] = env["TORCHELASTIC_ERROR_FILE"] = f"{base}.error.json"
            if self._local_ranks_filter and local_rank not in self._local_ranks_filter:
                continue
            if tee[local_rank] & Std.OUT == Std.OUT:
                dest.tee_stdouts[local_rank] = f"{base}.log"
            if tee[local_rank] & Std.ERR == Std.ERR:
                dest.tee_stderrs[local_rank] = f"{base}.err.log"
        return dest

    def _base(self, rank: str) -> str:
        """``rank{R}`` in the log directory, or in the first ``restart-K/`` that has no log of this rank yet:
        each later start of a worker group (torchrun's restarts, or a node its scheduler restarted) keeps
        the logs of the ones before it."""
        directory, restarts = self.root_log_dir, 0
        while os.path.exists(os.path.join(directory, f"rank{rank}.log")):
            restarts += 1
            directory = os.path.join(self.root_log_dir, f"restart-{restarts}")
        os.makedirs(directory, exist_ok=True)
        return os.path.join(directory, f"rank{rank}")
