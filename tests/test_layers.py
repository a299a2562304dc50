"""The architecture, kept true by reading the source: layers import only downwards, node/ is stdlib only,
the frameworks stay on the torch side, engines differ only in the registry, every public class says
what it is."""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest

from launcher import entrypoints

ROOT = Path(__file__).resolve().parent.parent / "launcher"
BASE = "base"  # launcher/__init__, errors.py, files.py, entrypoints.py: importable from every layer but node
# package -> the packages it may import (besides itself and the base modules); the data flows down this table
ALLOWED = {
    BASE: {"node"},  # launcher.progress(step): a user script's one call, a pointer to node's progress record
    "node": set(),
    "spec": set(),
    "cluster": set(),
    "render": {"spec"},
    "estimate": {"spec", "render"},
    "data": set(),
    "raycluster": {"node"},  # the Ray driver, its workers, the cluster check: programs of their own
    "plan": {"spec", "render", "cluster", "node", "data", "raycluster"},  # raycluster.job only: see below
    "run": {"spec", "render", "cluster", "node", "plan"},
    "tune": {"spec", "render", "estimate", "cluster", "node", "plan", "run"},
    "report": set(),
    "payload": {"spec", "node", "data"},
    "cli": {"spec", "render", "estimate", "cluster", "node", "plan", "run", "tune", "report", "payload", "data"},
}
FRAMEWORKS = {"torch", "deepspeed", "horovod", "transformers", "accelerate", "ray", "numpy"}
# Outside the torch side, only DeepSpeed's own config parser (the render layer's oracle), inside a function.
FRAMEWORK_EXCEPTIONS = {"render/deepspeed_check.py"}
FRAMEWORK_SIDES = {"payload", "raycluster"}  # the torch side, and the Ray programs (ray, torch, horovod.ray)
RAY_JOB = "raycluster/job.py"  # the one raycluster module the plan imports: stdlib only
THIRD_PARTY = {"yaml": {"spec", "tune", "cli"}, "click": {"cli"}, "hostlist": {"cluster"}, "optuna": {"tune"},
               "matplotlib": {"report"}}


def modules(root: Path = ROOT) -> list[Path]:
    return sorted(root.rglob("*.py"))


def layer_of(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).parts
    if path.name == "__main__.py" and len(parts) == 1:
        return "cli"  # `python -m launcher` is the CLI
    return parts[0] if len(parts) > 1 else BASE


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """Every module ``path`` imports (absolute names; ``from pkg import sub`` counts as ``pkg.sub``), with lines."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names] if target == "launcher" \
                else [(target, node.lineno)]
    return found


def target_layer(module: str, root: Path = ROOT) -> str | None:
    """The layer a ``launcher.…`` module belongs to (None: not ours)."""
    parts = module.split(".")
    if parts[0] != "launcher":
        return None
    if len(parts) == 1 or not (root / parts[1]).is_dir():
        return BASE
    return parts[1]


def upward_imports(root: Path) -> list[str]:
    wrong = []
    for path in modules(root):
        layer = layer_of(path, root)
        allowed = {layer, BASE, *ALLOWED.get(layer, set())}
        for module, line in imports(path, root):
            target = target_layer(module, root)
            if target is not None and target not in allowed:
                wrong.append(f"{path.relative_to(root)}:{line} ({layer}) imports {module} ({target})")
    return wrong


def framework_imports(root: Path) -> list[str]:
    wrong = []
    for path in modules(root):
        relative = path.relative_to(root).as_posix()
        if (layer_of(path, root) in FRAMEWORK_SIDES and relative != RAY_JOB) or relative in FRAMEWORK_EXCEPTIONS:
            continue
        wrong += [f"{relative}:{line} imports {module}" for module, line in imports(path, root)
                  if module.split(".")[0] in FRAMEWORKS]
    return wrong


def test_layers_import_only_downwards():
    wrong = upward_imports(ROOT)
    assert not wrong, "\n".join(wrong)


def test_node_imports_only_the_standard_library():
    wrong = []
    for path in (ROOT / "node").rglob("*.py"):
        for module, line in imports(path):
            top = module.split(".")[0]
            if top not in sys.stdlib_module_names and not module.startswith("launcher.node"):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_plan_imports_only_the_stdlib_ray_job():
    """Planning a Ray launch never imports ray: the plan layer reaches raycluster only through its job file."""
    reached = {module for path in (ROOT / "plan").rglob("*.py") for module, _ in imports(path)
               if target_layer(module) == "raycluster"}
    assert reached == {"launcher.raycluster.job"}
    job = [module for module, _ in imports(ROOT / RAY_JOB) if module.split(".")[0] not in sys.stdlib_module_names]
    assert job == []


def test_frameworks_are_imported_only_on_the_torch_side():
    wrong = framework_imports(ROOT)
    assert not wrong, "\n".join(wrong)


def test_third_party_libraries_stay_in_their_layers():
    wrong = []
    for path in modules():
        for module, line in imports(path):
            layers = THIRD_PARTY.get(module.split(".")[0])
            if layers is not None and layer_of(path) not in layers:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_cli():
    wrong = [f"{path.relative_to(ROOT)}:{line}" for path in modules() if layer_of(path) != "cli"
             for module, line in imports(path) if target_layer(module) == "cli"]
    assert not wrong


def test_engines_are_told_apart_only_by_the_registry():
    compare = re.compile(r"engine\s*[!=]=|[!=]=\s*[\w.]*engine\b")
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in modules()
             if "spec/engines" not in path.as_posix()
             for n, line in enumerate(path.read_text().splitlines(), 1) if compare.search(line)]
    assert not found, "\n".join(found)


def test_every_public_class_says_what_it_is():
    missing = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name}" for path in modules()
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and not ast.get_docstring(node)]
    assert not missing, "\n".join(missing)


def test_the_checks_see_a_violation(tmp_path):
    """A copy of the tree with a node module that imports the plan layer and torch fails both checks."""
    root = tmp_path / "launcher"
    for path in modules():
        (root / path.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        (root / path.relative_to(ROOT)).write_text(path.read_text())
    assert upward_imports(root) == [] and framework_imports(root) == []
    (root / "node" / "probe.py").write_text("from ..plan import model\nimport torch\n")
    assert upward_imports(root) == ["node/probe.py:1 (node) imports launcher.plan (plan)"]
    assert framework_imports(root) == ["node/probe.py:2 imports torch"]


@pytest.mark.parametrize("name", ["AGENT", "PROBE", "REAP", "STACKS", "PAYLOAD", "ALLREDUCE", "RAY_DRIVER", "RAY_CHECK",
                                  "CLI"])
def test_every_entrypoint_is_a_runnable_module(name):
    module = getattr(entrypoints, name)
    spec = importlib.util.find_spec(module)
    if spec.submodule_search_locations:  # a package runs its __main__.py
        assert importlib.util.find_spec(f"{module}.__main__") is not None
    else:
        assert 'if __name__ == "__main__":' in Path(spec.origin).read_text()


def test_reap_recognises_the_agent_by_its_entrypoint():
    from launcher.node import reap

    assert reap.AGENT == entrypoints.AGENT


def test_every_package_is_installed():
    """setup.cfg's ``packages = find:`` only sees folders with an __init__.py: every folder of modules has one."""
    from setuptools import find_packages

    found = set(find_packages(str(ROOT.parent), include=["launcher", "launcher.*"]))
    folders = {module_name(path.parent / "__init__.py") for path in modules() if "__pycache__" not in path.parts}
    assert folders <= found, sorted(folders - found)
