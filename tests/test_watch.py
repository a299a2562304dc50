"""What the launcher concludes from agent events and command exits: the first failure, lost nodes."""

from __future__ import annotations

import dataclasses

from launcher.node import events
from launcher.plan.model import LaunchPlan, NodePlan
from launcher.plan.transports import common
from launcher.run.watch import Watch


def plan(agents: str = "nodes", heartbeat_timeout: float = 10.0) -> LaunchPlan:
    nodes = [NodePlan("node-a", [], "/", "/py", ranks=[0, 1]), NodePlan("node-b", [], "/", "/py", ranks=[2, 3])]
    by = common.node_agents(nodes) if agents == "nodes" else common.rank_agents(nodes)
    return LaunchPlan("ddp", "ddp", "ssh", 4, "node-a", 20000, "node-a", "/run", "/run/config.json", nodes,
                      agents=by, heartbeat_timeout=heartbeat_timeout)


def test_the_first_failure_is_the_earliest_on_the_hosts_clocks_not_the_first_reported(tmp_path):
    (tmp_path / "rank3.err.log").write_text("Killed\n")
    watch = Watch(plan())
    watch.on_event({"kind": "gone", "id": "node1", "rank": 3, "t": 100.00}, now=1.0)
    watch.on_event({"kind": "gone", "id": "node0", "rank": 0, "t": 100.08}, now=1.0)
    # node-a's collateral failure (connection reset) is reported before node-b's real one
    watch.on_event({"kind": "exit", "id": "node0", "code": 1, "failures": [[0, 1], [1, -15]], "t": 100.5}, now=1.1)
    watch.on_event({"kind": "exit", "id": "node1", "code": 1, "failures": [[3, -9], [2, -15]], "t": 100.9}, now=1.2)
    first = watch.first(tmp_path)
    assert (first.host, first.rank, first.exit_code) == ("node-b", 3, -9)
    assert first.log_tails == {str(tmp_path / "rank3.err.log"): ["Killed"]}


def test_a_hung_rank_is_a_failure_with_its_reason(tmp_path):
    watch = Watch(plan(agents="ranks"))
    watch.on_event({"kind": "hung", "id": "rank2", "rank": 2, "pid": 7, "seconds": 5.1, "t": 50.0}, now=1.0)
    watch.on_event({"kind": "exit", "id": "rank0", "rank": 0, "code": 1, "failures": [], "t": 50.4}, now=1.5)
    first = watch.first(tmp_path)
    assert (first.host, first.rank, first.exit_code) == ("node-b", 2, None)
    assert first.reason == "hung: stopped for 5.1 s, killed by launchdeck's agent"


def test_an_agent_that_stops_answering_is_a_lost_node(tmp_path):
    watch = Watch(plan(heartbeat_timeout=3.0))
    for agent in ("node0", "node1"):
        watch.on_event({"kind": "start", "id": agent, "pid": 1, "host": "x"}, now=watch.begun)
    watch.on_event({"kind": "beat", "id": "node0"}, now=watch.begun + 2.0)
    watch.check(watch.begun + 2.5)
    assert not watch.failed
    watch.check(watch.begun + 3.5)
    first = watch.first(tmp_path)
    assert (first.host, first.rank, first.exit_code) == ("node-b", None, None)
    assert first.reason.startswith("stopped answering: no heartbeat for 3.5 s")
    watch.check(watch.begun + 4.0)
    assert len(watch.candidates) == 1  # node-a answered within its timeout; node-b is reported once


def test_a_command_that_dies_before_its_agent_reports_names_its_host_and_output(tmp_path):
    watch = Watch(plan())
    watch.on_exit(["node1"], "ssh node-b", 255, ["ssh: connect to host node-b port 22: Connection refused\n"])
    first = watch.first(tmp_path)
    assert (first.host, first.exit_code) == ("node-b", 255)
    assert first.reason == "ssh node-b exited with code 255 before its agent reported"
    assert first.log_tails == {"output": ["ssh: connect to host node-b port 22: Connection refused"]}


def test_after_an_interrupt_nothing_counts_as_a_failure(tmp_path):
    watch = Watch(plan())
    watch.frozen = True
    watch.on_event({"kind": "exit", "id": "node0", "code": 143, "failures": [], "t": 1.0}, now=1.0)
    watch.on_exit(["node1"], "ssh node-b", 255, [])
    assert not watch.failed and watch.first(tmp_path) is None


def test_lines_from_unknown_agents_are_ignored():
    watch = Watch(plan())
    watch.on_event({"kind": "exit", "id": "node7", "code": 1, "t": 1.0}, now=1.0)
    assert not watch.failed



def test_a_launcher_command_for_every_host_that_dies_blames_no_single_host(tmp_path):
    watch = Watch(plan(agents="ranks"))
    watch.on_exit(["rank0", "rank1", "rank2", "rank3"], "openmpi", 1, ["ORTE was unable to start orted\n"])
    first = watch.first(tmp_path)
    assert (first.host, first.rank) == ("openmpi", None)
    assert first.reason == "openmpi exited with code 1 before its agent reported"


def test_events_of_another_run_and_malformed_events_are_ordinary_output():
    mine, other = events.tag_for("/runs/a"), events.tag_for("/runs/b")
    line = events.encode(other, "exit", id="node0", code=1, t=1.0, failures=[])
    assert events.decode(line, other) == {"kind": "exit", "id": "node0", "code": 1, "t": 1.0, "failures": []}
    assert events.decode(line, mine) is None  # a rank printing a nested job's events
    assert events.decode(f"{events.MARKER}{mine}:" + '{"kind": "exit", "id": "node0"}', mine) is None  # no code
    assert events.decode(f"{events.MARKER}{mine}:" + '{"kind": "start", "id": "node0", "pid": 7}', mine)
    assert events.decode("[rank0]:" + events.encode(mine, "beat", id="rank0"), mine) == {"kind": "beat", "id": "rank0"}


def test_heartbeats_carry_progress_and_a_stall_is_the_behind_ranks_failure(tmp_path):
    watch = Watch(dataclasses.replace(plan(), stall_timeout=5.0))
    for agent, ranks in (("node0", (0, 1)), ("node1", (2, 3))):
        moved = {str(rank): [1, 1, "train", 10.0] for rank in ranks}
        watch.on_event({"kind": "beat", "id": agent, "progress": moved}, now=1.0)
    watch.on_event({"kind": "beat", "id": "node1", "progress": {"2": [1, 2, "train", 11.0], "3": "garbage",
                                                                "x": [1, 2, "train", 1.0]}}, now=2.0)
    assert watch.stall.positions[2].working == 2 and watch.stall.positions[3].working == 1
    watch.on_event({"kind": "beat", "id": "node0", "progress": [1, 2]}, now=2.0)  # malformed: ignored
    watch.on_event({"kind": "gone", "id": "node1", "rank": 3, "t": 12.0}, now=2.0)
    assert watch.stall.ended == {3} and watch.stall.check(20.0) is None  # gone mid-training: the exit path's
    watch.on_event({"kind": "beat", "id": "node1", "progress": {"3": [1, 1, "finished", 12.0]}}, now=2.0)
    found = watch.stall.check(20.0)
    assert found.behind == [0, 1]  # still after step 1 while rank 2 is in step 2; rank 3 finished and left
    watch.stalled_now(found, ["rank 0 …", "rank 1 …"], t=5.0)
    first = watch.first(tmp_path)
    assert (first.host, first.rank, first.exit_code) == ("node-a", 0, None)
    assert first.reason.startswith("stalled: no rank made progress for 18.0 s") and first.stacks == ["rank 0 …",
                                                                                                     "rank 1 …"]
