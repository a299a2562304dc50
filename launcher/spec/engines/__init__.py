"""The engine registry: one typed entry per training engine, the only place engines differ by name.

An entry names the engine's parts by ``"module:attribute"`` (its renderer, its config check, its
payload) so that the registry itself imports nothing heavy, and states the facts the other layers ask
about: the strategy sections it owns, its process-group backend per device, what a CPU run must change,
how it starts on one machine. Adding an engine is one module with an :class:`EngineSpec` plus one line
in ``_BUILTIN``; nothing else compares engine names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ...errors import StrategyError

if TYPE_CHECKING:
    from ..strategy import Strategy

CpuChange = tuple[str, str]  # (--set override, why): what a CPU run changes, and the notice it prints


def _no_changes(strategy: Strategy) -> list[CpuChange]:
    return []


def _nothing_missing() -> str | None:
    return None


@dataclass(frozen=True)
class Knob:
    """A numeric strategy knob a tuner may search: its range, whether it is searched on a log scale, whether
    it takes integers only."""

    low: float
    high: float
    log: bool = True
    integer: bool = False
    multiple: int = 1  # integers only: the value must be a multiple of this


@dataclass(frozen=True)
class EngineSpec:
    """Everything launchdeck needs to know about one engine; invariant: ``name`` is its registry key.

    Parts are ``"module:attribute"`` strings, loaded with :meth:`load` only where they are used, so the
    CLI's fast paths never import a renderer or torch they do not need.
    """

    name: str
    description: str
    renderer: str  # "module:function": (Strategy, Cluster, hf=bool) -> RenderedConfig
    sections: frozenset[str] = frozenset()  # the strategy sections it owns; other engines' are refused
    defaults: dict[str, Any] = field(default_factory=dict)  # section -> value filled in when absent
    payload: str | None = None  # the payload's engine module (comm, shape, create); None: scripts only
    checker: str | None = None  # "module:function" (RenderedConfig) -> None: the engine's own config parser
    estimator: str | None = None  # "module:function" (RenderedConfig, Workload) -> Breakdown: memory per rank
    model_check: str | None = None  # "module:function" (RenderedConfig, ModelShape) -> None: fits this model?
    tunable: dict[str, Knob] = field(default_factory=dict)  # dotted knob -> range `tune --search bayes` explores
    backends: dict[str, str] = field(default_factory=lambda: {"cpu": "gloo", "gpu": "nccl"})
    local_launcher: Literal["torchrun", "horovodrun"] = "torchrun"  # how it starts on one machine
    ray_runner: Literal["torch", "horovod"] = "torch"  # on Ray: Ray Train's TorchTrainer, or horovod.ray's RayExecutor
    config_flag: str | None = None  # appended with the config's path to a user's script (unless present)
    native_config: bool = False  # the rendered config is the engine's own file format (ds_configs/)
    hf_flavour: bool = False  # render --hf (the Hugging Face Trainer's "auto" config) applies
    host_packages: tuple[str, ...] = ()  # packages every host needs beyond torch and DeepSpeed (preflight)
    k8s_kinds: tuple[str, ...] = ("pytorchjob", "trainjob")  # Kubeflow jobs it runs as (the first: default)
    k8s_runtime: str = "torch-distributed"  # the Kubeflow Trainer runtime a TrainJob of it references
    cpu_changes: Callable[[Strategy], list[CpuChange]] = _no_changes  # features a CPU has no kernel for
    missing_here: Callable[[], str | None] = _nothing_missing  # why it cannot run here (None: it can)

    def load(self, part: str) -> Any:
        """Import one of the entry's ``"module:attribute"`` parts."""
        module, _, attribute = getattr(self, part).partition(":")
        loaded = importlib.import_module(module)
        return getattr(loaded, attribute) if attribute else loaded


_BUILTIN = {  # engine -> the module holding its SPEC
    "deepspeed": "launcher.spec.engines.deepspeed",
    "ddp": "launcher.spec.engines.ddp",
    "horovod": "launcher.spec.engines.horovod",
    "fsdp2": "launcher.spec.engines.fsdp2",
}
REGISTRY: dict[str, EngineSpec] = {}


def register(spec: EngineSpec) -> EngineSpec:
    """Add (or replace) an engine; returns it, so a module can write ``SPEC = register(EngineSpec(…))``."""
    REGISTRY[spec.name] = spec
    return spec


def names() -> list[str]:
    return sorted({*_BUILTIN, *REGISTRY})


def get(name: str) -> EngineSpec:
    """The entry for ``name``; an unknown engine is a :class:`StrategyError` listing the known ones."""
    if name not in REGISTRY and name in _BUILTIN:
        register(importlib.import_module(_BUILTIN[name]).SPEC)
    if name not in REGISTRY:
        raise StrategyError(f"unknown engine '{name}' (known: {', '.join(names())})")
    return REGISTRY[name]


def all_sections() -> frozenset[str]:
    """Every section some engine owns: a section no engine of a strategy owns is refused."""
    return frozenset().union(*(get(name).sections for name in names()))
