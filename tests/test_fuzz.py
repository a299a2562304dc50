"""Generated input on every surface the CLI reads: exit 0 with output that reads back, or exit 2 with exactly
one line on stderr; never a traceback, never a hang.

Seeded (``derandomize``; ``FUZZ_RANDOM=1`` draws new cases, ``FUZZ_EXAMPLES=N`` sets the cases per
surface), bounded per example (a hang is a failure after HANG_S), and counted: each test prints how many
cases it tried and how many were accepted (``pytest -s``), and both are asserted, so a surface cannot
silently stop being exercised. Text for the command line and the environment has no NUL (neither can
carry one); file contents can be anything. Surfaces: strategy YAML (structure, values, raw text and bytes), ``--set``,
``extends`` chains, hostfiles in all three formats (with host names, slots and junk), ``--include`` /
``--exclude``, Slurm node lists and ``SLURM_TASKS_PER_NODE``, LSF and PBS allocations, ``--env`` names and
values, ``--master-port``, ``--run-dir`` and ``--stall-at`` on a dry run, and model ``config.json`` files
for ``estimate``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import string
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launcher.cli import main as cli
from launcher.spec import schema
from launcher.spec.catalog import load_strategy, names

HANG_S = 20.0
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))  # per surface; `make stress` runs more
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("FUZZ_RANDOM"),
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])
TRIED: Counter[str] = Counter()
ACCEPTED: Counter[str] = Counter()  # of those, exit 0


class Hang(Exception):
    """An example ran longer than HANG_S."""


@contextlib.contextmanager
def bounded(seconds: float = HANG_S):
    def hang(_signum, _frame):
        raise Hang(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(surface: str, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """The CLI in-process on ``argv``; asserts the property and returns (exit code, stdout)."""
    TRIED[surface] += 1
    with bounded():
        result = CliRunner().invoke(cli, argv, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{argv!r}: {type(result.exception).__name__}: {result.exception}") \
            from result.exception
    assert result.exit_code in (0, 2), (argv, result.exit_code, result.stderr)
    if result.exit_code == 2:
        assert result.stderr.count("\n") == 1 and "error: " in result.stderr, (argv, result.stderr)
        assert result.stdout == "", (argv, result.stdout)
    assert "Traceback" not in result.stderr
    ACCEPTED[surface] += result.exit_code == 0
    return result.exit_code, result.stdout


def tried(surface: str, at_least: int = EXAMPLES // 2) -> None:
    """Enough cases ran, and the generators reached both sides: accepted input and refused input."""
    print(f"fuzz {surface}: {TRIED[surface]} generated cases, {ACCEPTED[surface]} accepted")
    assert TRIED[surface] >= at_least and 0 < ACCEPTED[surface] < TRIED[surface]


# --- building blocks -----------------------------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"), max_size=16)
ANY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=64)  # file contents
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(), TEXT)


def _knob_values() -> dict[str, set[str]]:
    """Every dotted knob path the catalog's strategies have (``zero.stage`` …) -> the values they give it."""
    found: dict[str, set[str]] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict) and value:
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else key, sub)
        else:
            found.setdefault(prefix, set()).add(json.dumps(value))

    for name in names():
        walk("", schema.dump(load_strategy(name)))
    found.pop("name")
    return found


KNOB_VALUES = _knob_values()
KNOBS = sorted(KNOB_VALUES)
SECTIONS = sorted({path.split(".")[0] for path in KNOBS if "." in path})
KEYS = st.one_of(st.sampled_from(SECTIONS + [path.split(".")[-1] for path in KNOBS]), TEXT)
DOCS = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)
OVERRIDE_VALUES = st.one_of(st.integers(-5, 10**10).map(str), st.floats().map(str), TEXT,
                            st.sampled_from(["true", "null", "[1, 2]", "{a: 1}", "1e8", "bf16", "cpu", "'x", ""]))


def _write(path: Path, content: str | bytes) -> str:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return str(path)


@contextlib.contextmanager
def folder():
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


# --- strategy files, --set, extends ----------------------------------------------------------------------------

STRATEGY_FILES = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(SECTIONS + ["description", "extends", "engine"]), TEXT), DOCS,
                    max_size=6).map(lambda doc: yaml.safe_dump(doc, allow_unicode=True)),
    st.fixed_dictionaries({"description": TEXT, "extends": st.sampled_from(names())},
                          optional={s: DOCS for s in SECTIONS}).map(yaml.safe_dump),
    ANY_TEXT, st.binary(max_size=64))


@SETTINGS
@given(STRATEGY_FILES)
def _strategy_files(content):
    with folder() as tmp:
        code, out = run("strategy yaml", ["show", _write(tmp / "mine.yaml", content)])
        if code == 0:  # what show prints is a strategy file that shows the same
            again = run("strategy yaml", ["show", _write(tmp / "again.yaml", out)])[1]
            assert again.splitlines()[1:] == out.splitlines()[1:]


def test_strategy_files():
    _strategy_files()
    tried("strategy yaml")


@st.composite
def overrides(draw) -> tuple[str, str]:
    """A knob (or not) and a value: often one the catalog gives that knob, else anything."""
    key = draw(st.one_of(st.sampled_from(KNOBS), TEXT))
    known = sorted(KNOB_VALUES.get(key, ()))
    return key, draw(st.sampled_from(known) if known and draw(st.booleans()) else OVERRIDE_VALUES)


@SETTINGS
@given(st.sampled_from(names()), st.sampled_from([1, 2, 4, 8, 3, 64]), st.lists(overrides(), min_size=1, max_size=3))
def _overrides(name, world, pairs):
    sets = [arg for key, value in pairs for arg in ("--set", f"{key}={value}")]
    code, out = run("--set", ["render", name, "-n", str(world), *sets])
    if code == 0:
        assert isinstance(json.loads(out), dict)


def test_set_overrides():
    _overrides()
    tried("--set")


@SETTINGS
@given(st.lists(st.fixed_dictionaries(
    {"extends": st.one_of(st.sampled_from(["f1.yaml", "f2.yaml", "./f1.yaml", "zero1", "ddp", "zero3"]),
                          st.sampled_from(["f0.yaml", "nope.yaml", "../x.yaml", ""]), TEXT),
     "description": st.one_of(st.just("mine"), TEXT)},
    optional={"training": st.fixed_dictionaries({"micro_batch": st.integers(-1, 64)})}),
    min_size=1, max_size=3))
def _extends(docs):
    with folder() as tmp:
        for index, doc in enumerate(docs):
            _write(tmp / f"f{index}.yaml", yaml.safe_dump(doc))
        run("extends", ["show", str(tmp / "f0.yaml")])


def test_extends_chains():
    _extends()
    tried("extends")


# --- hosts -----------------------------------------------------------------------------------------------------

HOSTS = st.one_of(st.from_regex(r"[a-z][a-z0-9-]{0,8}(\.[a-z]{1,4})?", fullmatch=True),
                  st.from_regex(r"10\.0\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True), TEXT)
SLOTS = st.one_of(st.integers(-2, 10**4).map(str), TEXT)
LINES = st.one_of(
    st.tuples(HOSTS, SLOTS).map(lambda hs: f"{hs[0]} slots={hs[1]}"),
    st.tuples(HOSTS, SLOTS).map(lambda hs: f"{hs[0]}:{hs[1]}"),
    st.tuples(HOSTS, SLOTS, SLOTS).map(lambda h: f"{h[0]} slots={h[1]} max_slots={h[2]}"),
    HOSTS, st.sampled_from(["", "# a comment", "   ", "slots=2", "a slots = 4", "a:2:3"]), TEXT)


NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
VALID_HOSTFILES = st.tuples(st.sampled_from(["{h} slots={n}", "{h}:{n}", "{h} slots={n} max_slots=64"]),
                            st.lists(st.tuples(NAMES, st.integers(1, 16)), min_size=1, max_size=4,
                                     unique_by=lambda hn: hn[0])).map(
    lambda f: [f[0].format(h=h, n=n) for h, n in f[1]])


@SETTINGS
@given(st.one_of(st.lists(LINES, max_size=6), VALID_HOSTFILES))
def _hostfiles(lines):
    with folder() as tmp:
        path = _write(tmp / "hosts", "\n".join(lines) + "\n")
        code, out = run("hostfile", ["hostfile", "check", path, "--json"])
        if code != 0:
            return
        for fmt in ("deepspeed", "horovod", "mpi"):  # every format reads back to the same hosts
            converted = run("hostfile", ["hostfile", "convert", path, "--to", fmt])[1]
            assert json.loads(run("hostfile", ["hostfile", "check", _write(tmp / fmt, converted), "--json"])[1]) \
                == json.loads(out)
        run("hostfile", ["launch", "ddp", "--cpu", "--hostfile", path, "--dry-run", "--json"])


def test_hostfiles():
    _hostfiles()
    tried("hostfile", at_least=EXAMPLES)


FILTERS = st.one_of(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c", "zz", "", "a.b"]),
                       st.lists(st.integers(-1, 6), max_size=3)), min_size=1, max_size=3).map(
        lambda items: "@".join(h + (":" + ",".join(map(str, s)) if s else "") for h, s in items)),
    TEXT)


@SETTINGS
@given(st.sampled_from(["--include", "--exclude"]), FILTERS)
def _filters(flag, text):
    with folder() as tmp:
        path = _write(tmp / "hosts", "a slots=4\nb slots=4\nc slots=2\n")
        code, out = run("include/exclude", ["hostfile", "check", path, flag, text, "--json"])
        if code == 0:
            found = json.loads(out)
            assert set(found["hosts"]) <= {"a", "b", "c"} and 0 < found["world_size"] <= 10


def test_include_exclude():
    _filters()
    tried("include/exclude")


NODELISTS = st.one_of(
    st.tuples(st.from_regex(r"[a-z]{1,4}", fullmatch=True), st.integers(0, 30), st.integers(0, 30),
              st.sampled_from(["", ",x9", ",[1-2]"])).map(lambda t: f"{t[0]}[{t[1]:02d}-{t[2]:02d}]{t[3]}"),
    st.lists(HOSTS, min_size=1, max_size=3).map(",".join), TEXT)
TASKS = st.one_of(st.lists(st.tuples(st.integers(-1, 9), st.one_of(st.none(), st.integers(-1, 40))), min_size=1,
                           max_size=3).map(lambda items: ",".join(f"{n}(x{r})" if r is not None else str(n)
                                                                  for n, r in items)), TEXT)


@SETTINGS
@given(NODELISTS, TASKS, st.one_of(st.none(), st.integers(1, 8)))
def _slurm(nodelist, tasks, slots):
    with folder() as tmp:
        code, out = run("slurm node list", ["hostfile", "from-slurm", nodelist,
                                            *(["--slots", str(slots)] if slots else [])],
                        env={"SLURM_TASKS_PER_NODE": tasks})
        if code == 0:
            run("slurm node list", ["hostfile", "check", _write(tmp / "hosts", out), "--json"])


def test_slurm_node_lists():
    _slurm()
    tried("slurm node list")


@SETTINGS
@given(st.lists(st.tuples(HOSTS, SLOTS), max_size=4).map(lambda items: " ".join(f"{h} {n}" for h, n in items)),
       st.lists(HOSTS, max_size=5))
def _lsf_pbs(mcpu_hosts, pbs_lines):
    with folder() as tmp:
        run("lsf/pbs", ["hostfile", "from-lsf"], env={"LSB_MCPU_HOSTS": mcpu_hosts, "LSB_HOSTS": None})
        run("lsf/pbs", ["hostfile", "from-pbs", _write(tmp / "nodes", "\n".join(pbs_lines) + "\n")])


def test_lsf_and_pbs_allocations():
    _lsf_pbs()
    tried("lsf/pbs")


# --- a launch's own flags (dry run) ----------------------------------------------------------------------------

ENV_NAMES = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True), TEXT)


@SETTINGS
@given(ENV_NAMES, TEXT, st.one_of(st.none(), st.integers(-5, 70000)), st.one_of(st.none(), TEXT),
       st.one_of(st.none(), TEXT, st.sampled_from(["0:1", "1:5", "9:1"])))
def _launch_flags(name, value, port, run_dir, stall_at):
    argv = ["launch", "ddp", "--cpu", "--dry-run", "--json", "--env", f"{name}={value}"]
    argv += ["--master-port", str(port)] if port is not None else []
    argv += ["--run-dir", run_dir] if run_dir is not None else []
    argv += ["--stall-at", stall_at] if stall_at is not None else []
    code, out = run("launch flags", argv)
    if code == 0:  # the value reaches the ranks verbatim (NAME ends at the first '=')
        key, _, verbatim = f"{name}={value}".partition("=")
        assert json.loads(out)["nodes"][0]["env"][key] == verbatim


def test_launch_flags():
    _launch_flags()
    tried("launch flags")


# --- model configs for estimate --------------------------------------------------------------------------------

MODEL_KEYS = ["model_type", "hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size",
              "num_hidden_layers", "vocab_size", "max_position_embeddings", "tie_word_embeddings", "head_dim",
              "attention_bias", "mlp_bias", "n_embd", "n_layer", "n_head", "n_positions", "architectures"]
SIZES = st.one_of(st.integers(-4, 2**20), SCALARS)
LLAMA = st.fixed_dictionaries({
    "model_type": st.sampled_from(["llama", "mistral", "qwen2"]), "hidden_size": st.sampled_from([64, 256, 4096]),
    "num_attention_heads": st.sampled_from([1, 4, 32]), "num_hidden_layers": st.integers(1, 80),
    "intermediate_size": st.sampled_from([128, 11008]), "vocab_size": st.sampled_from([256, 32000])},
    optional={"num_key_value_heads": st.sampled_from([1, 4, 8, 3]), "tie_word_embeddings": st.booleans(),
              "max_position_embeddings": st.sampled_from([128, 4096]), "head_dim": st.sampled_from([16, 128])})
CONFIGS = st.one_of(
    LLAMA.map(json.dumps),
    st.fixed_dictionaries({"model_type": st.sampled_from(["llama", "mistral", "qwen2", "gpt2", "bert", "x"])},
                          optional={key: SIZES for key in MODEL_KEYS[1:]}).map(json.dumps),
    st.dictionaries(st.one_of(st.sampled_from(MODEL_KEYS), TEXT), DOCS, max_size=6).map(json.dumps),
    st.text(string.printable, max_size=40), st.binary(max_size=32))


@SETTINGS
@given(CONFIGS, st.sampled_from(["zero3", "ddp", "zero2-offload"]), st.integers(1, 64))
def _model_configs(content, name, world):
    with folder() as tmp:
        code, out = run("model config", ["estimate", name, "--model", _write(tmp / "config.json", content), "-n",
                                         str(world), "--json"])
        if code == 0:
            assert json.loads(out)


def test_model_configs():
    _model_configs()
    tried("model config")


@pytest.fixture(scope="module", autouse=True)
def total():
    yield
    print(f"fuzz total: {sum(TRIED.values())} generated cases over {len(TRIED)} surfaces")


# --- the payload's --data (the launch checks sizes; the payload reads the content) ----------------------------

DATA = st.one_of(st.binary(max_size=64), st.binary(min_size=4096, max_size=6000), ANY_TEXT,
                 st.lists(st.one_of(DOCS.map(json.dumps), ANY_TEXT), max_size=5).map("\n".join),
                 st.lists(st.text(max_size=200).map(lambda t: json.dumps({"text": t})), min_size=30,
                          max_size=60).map("\n".join))


@SETTINGS
@given(DATA, st.sampled_from(["corpus.txt", "corpus.jsonl", "folder"]))
def _payload_data(content, name):
    from launcher.payload.train.data import load_corpus  # the torch side: numpy and torch

    with folder() as tmp:
        path = tmp / name
        target = path / "part.md" if name == "folder" else path
        target.parent.mkdir(parents=True, exist_ok=True)
        _write(target, content)
        code, _ = run("payload --data", ["launch", "ddp", "--cpu", "--data", str(path), "--dry-run"])
        try:
            accepted = load_corpus(str(path)).size >= 4096
        except SystemExit as exc:  # the payload's own one-line refusal
            message = str(exc)
            assert message.startswith("launchdeck: error: --data ") and "\n" not in message, message
            accepted = False
        if code == 2:  # what the launch refuses, the payload would refuse too
            assert not accepted


def test_payload_data():
    _payload_data()
    tried("payload --data", at_least=EXAMPLES)
