"""The one layer that starts processes: the run API (:mod:`.api`), the doctor, the executor and its watch,
preflight, and the run record."""
