"""Hostfiles and node lists: parsing, strictness, filters, scheduler env, round trips, DeepSpeed compatibility."""

from __future__ import annotations

import itertools
import json
import re

import pytest

from launcher.cluster import hosts, schedulers
from launcher.cluster.hosts import Host, HostfileError

SAMPLE = """
# two nodes
node-1 slots=8   # trailing comment
10.0.0.2 slots=4

node-3.cluster.local:2
"""


def test_parse_accepts_deepspeed_and_colon_forms_with_comments():
    assert hosts.parse(SAMPLE) == [Host("node-1", 8), Host("10.0.0.2", 4), Host("node-3.cluster.local", 2)]


@pytest.mark.parametrize("text, message", [
    ("a slots=0\n", "hostfile:1: slots=0: a host needs at least 1 slot"),
    ("a slots=2\nb slots=1\na slots=4\n", "hostfile:3: duplicate host 'a' (first on line 1)"),
    ("a slots = 4\n", "hostfile:1: expected 'host slots=N' or 'host:N'"),
    ("a\n", "hostfile:1: expected 'host slots=N'"),
    ("a slots=x\n", "slots must be a whole number"),
    ("a:-1\n", "slots must be a whole number"),
    ("-oProxyCommand=touch slots=1\n", "invalid host name '-oProxyCommand=touch'"),
    ("a;rm slots=1\n", "invalid host name 'a;rm'"),
    ("$(id) slots=1\n", "invalid host name '$(id)'"),
    ("`id`:1\n", "invalid host name '`id`'"),
    ("a|b:1\n", "invalid host name 'a|b'"),
    ("host..x slots=1\n", "invalid host name"),
    ("-node slots=1\n", "invalid host name '-node'"),
    (("x" * 64) + " slots=1\n", "invalid host name"),
    ("# only comments\n\n", "hostfile: no hosts"),
])
def test_parse_refuses_what_deepspeed_gets_silently_wrong(text, message):
    with pytest.raises(HostfileError) as info:
        hosts.parse(text)
    assert message in str(info.value)


def test_a_missing_hostfile_is_an_error(tmp_path):
    with pytest.raises(HostfileError, match="hostfile not found"):
        hosts.read(tmp_path / "nope")


@pytest.mark.parametrize("fmt", hosts.FORMATS)
def test_every_format_round_trips(fmt):
    original = hosts.parse(SAMPLE)
    assert hosts.parse(hosts.format_hosts(original, fmt)) == original


def test_every_format_converts_to_every_other_without_loss():
    original = hosts.parse(SAMPLE)
    for a, b in itertools.permutations(hosts.FORMATS, 2):
        via = hosts.parse(hosts.format_hosts(hosts.parse(hosts.format_hosts(original, a)), b))
        assert via == original


def test_deepspeed_reads_our_hostfiles_identically(tmp_path):
    from deepspeed.launcher.runner import fetch_hostfile

    original = hosts.parse(SAMPLE)
    for fmt in ("deepspeed", "mpi"):
        path = tmp_path / f"hosts.{fmt}"
        path.write_text(hosts.format_hosts(original, fmt))
        assert dict(fetch_hostfile(str(path))) == {h.name: h.slots for h in original}


FILTER_CASES = [
    ("a@c", None, {"a": [0, 1, 2, 3], "c": [0, 1]}),
    ("c:1@a:0,2", None, {"a": [0, 2], "c": [1]}),
    (None, "b", {"a": [0, 1, 2, 3], "c": [0, 1]}),
    (None, "a:0,1@c:0,1", {"a": [2, 3], "b": [0, 1]}),
]


@pytest.mark.parametrize("include, exclude, expected", FILTER_CASES)
def test_filters_match_deepspeeds_meaning(include, exclude, expected):
    from collections import OrderedDict

    from deepspeed.launcher.runner import parse_resource_filter

    res = hosts.resources([Host("a", 4), Host("b", 2), Host("c", 2)])
    ours = hosts.apply_filters(res, include, exclude)
    theirs = parse_resource_filter(OrderedDict((h, list(s)) for h, s in res.items()), include or "", exclude or "")
    assert ours == expected == {h: list(s) for h, s in theirs.items()}
    assert list(ours) == [h for h in res if h in ours]  # hostfile order kept


@pytest.mark.parametrize("include, exclude, message", [
    ("a", "b", "mutually exclusive"), ("z", None, "host 'z' is not in the hostfile"),
    ("a:9", None, "a has no slot 9"), ("a:x", None, "bad slot list"), (None, "a@b@c", "leaves no slots"),
    ("a;id", None, "invalid host name"),
])
def test_bad_filters(include, exclude, message):
    res = hosts.resources([Host("a", 4), Host("b", 2), Host("c", 2)])
    with pytest.raises(HostfileError, match=message):
        hosts.apply_filters(res, include, exclude)


def test_slurm_node_lists_expand_with_python_hostlist(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[01-03,07],login-a")
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", "8(x3),4,1")
    found = schedulers.from_slurm(None, None)
    assert [(h.name, h.slots) for h in found] == [("gpu01", 8), ("gpu02", 8), ("gpu03", 8), ("gpu07", 4),
                                                   ("login-a", 1)]
    assert [h.slots for h in schedulers.from_slurm("n[1-2]", 2)] == [2, 2]


@pytest.mark.parametrize("text, nodes, expected", [("8(x4)", 4, [8] * 4), ("2,1", 2, [2, 1]),
                                                   ("2(x3),1", 4, [2, 2, 2, 1])])
def test_tasks_per_node_forms(text, nodes, expected):
    assert schedulers.tasks_per_node(text, nodes) == expected


@pytest.mark.parametrize("nodelist, tasks, message", [
    ("n[1-3]", "2(x2)", "describes 2 node(s), the node list has 3"), ("n[1-2]", "two", "bad tasks-per-node"),
    ("n[3-1]", "1", "bad node list"), ("n[1-2", "1", "bad node list")
])
def test_bad_slurm_input(monkeypatch, nodelist, tasks, message):
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", tasks)
    with pytest.raises(HostfileError, match=re.escape(message)):
        schedulers.from_slurm(nodelist, None)


def test_pbs_and_lsf(tmp_path, monkeypatch):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("n1\nn1\nn2\nn1\nn2\n")
    assert schedulers.from_pbs(str(nodefile)) == [Host("n1", 3), Host("n2", 2)]
    monkeypatch.setenv("LSB_MCPU_HOSTS", "a 4 b 2")
    assert schedulers.from_lsf() == [Host("a", 4), Host("b", 2)]
    monkeypatch.delenv("LSB_MCPU_HOSTS")
    monkeypatch.setenv("LSB_HOSTS", "a a b")
    assert schedulers.from_lsf() == [Host("a", 2), Host("b", 1)]
    monkeypatch.setenv("LSB_MCPU_HOSTS", "a 4 b")
    with pytest.raises(HostfileError, match="bad \\$LSB_MCPU_HOSTS"):
        schedulers.from_lsf()


def test_hostfile_cli_round_trip(cli, tmp_path):
    out = tmp_path / "hf"
    assert cli("hostfile", "create", "a:8", "b", "--slots", "2", "--format", "horovod", "-o", str(out)).exit_code == 0
    assert out.read_text() == "a:8\nb:2\n"
    converted = cli("hostfile", "convert", str(out), "--to", "deepspeed").stdout
    assert converted == "a slots=8\nb slots=2\n"
    checked = json.loads(cli("hostfile", "check", str(out), "--include", "a:0,1@b", "--json").stdout)
    assert checked == {"hosts": {"a": [0, 1], "b": [0, 1]}, "world_size": 4}
    slurm = cli("hostfile", "from-slurm", "gpu[1-2]", "--slots", "4", env={"SLURM_TASKS_PER_NODE": ""}).stdout
    assert slurm == "gpu1 slots=4\ngpu2 slots=4\n"


@pytest.mark.parametrize("argv, message", [
    (["hostfile", "create", "a;rm -rf ~"], "invalid host name"),
    (["hostfile", "create", "--", "-oProxyCommand=x"], "invalid host name '-oProxyCommand=x'"),
    (["hostfile", "create", "a:0"], "at least 1 slot"),
    (["hostfile", "create", "a", "a:2"], "duplicate host"),
    (["hostfile", "check", "/nonexistent/hosts"], "hostfile not found"),
    (["hostfile", "from-slurm"], "no node list"),
    (["hostfile", "from-slurm", "n[1-2]"], "slots per node unknown"),
])
def test_hostfile_cli_errors_are_one_line(argv, message, capsys, monkeypatch):
    from launcher.cli import main

    for var in ("SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURM_TASKS_PER_NODE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and message in err


def test_lsf_counts_are_ascii_digits_found_by_fuzzing(monkeypatch):
    """'²'.isdigit() is true and int('²') raises: it was a traceback, now one line."""
    monkeypatch.setenv("LSB_MCPU_HOSTS", "a ²")
    with pytest.raises(HostfileError, match="bad \\$LSB_MCPU_HOSTS 'a ²'"):
        schedulers.from_lsf()
