"""Failures and signals: a crashing rank ends the job, resume continues exactly, Ctrl-C stops only its job."""

from __future__ import annotations

import signal
import time

import pytest

from .launching import launchdeck, processes_of, result, start

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["ddp", "zero2"])
def test_crash_tears_down_and_resume_continues_the_same_curve(name, tmp_path):
    common = ["launch", name, "--cpu", "--steps", "12", "--save-every", "4"]
    full = launchdeck(*common, "--run-dir", str(tmp_path / "full"), cwd=tmp_path)
    assert full.returncode == 0, full.stderr[-3000:]

    crashed_dir = tmp_path / "crashed"
    crashed = launchdeck(*common, "--run-dir", str(crashed_dir), "--crash-at", "1:7", cwd=tmp_path)
    assert crashed.returncode == 17
    assert "rank 1 on localhost: exit code 17" in crashed.stderr
    assert "fault drill: rank 1 exits with 17 before step 7" in crashed.stderr  # the rank's own log tail
    assert not processes_of(crashed_dir)
    assert (crashed_dir / "checkpoints" / "latest").read_text().strip() == "step-000004"

    resumed = launchdeck(*common, "--run-dir", str(tmp_path / "resumed"), "--resume", str(crashed_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    before, after = result(tmp_path / "full"), result(tmp_path / "resumed")
    assert after["start_step"] == 4 and len(after["losses"]) == 8
    assert after["losses"] == pytest.approx(before["losses"][4:], rel=1e-5, abs=1e-5)
    assert after["param_digests"] == before["param_digests"] or name == "zero2"


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_ctrl_c_stops_exactly_one_job(tmp_path):
    victim_dir, bystander_dir = tmp_path / "victim", tmp_path / "bystander"
    victim = start("launch", "ddp", "--cpu", "--steps", "100000", "--run-dir", str(victim_dir),
                   cwd=tmp_path, log=tmp_path / "victim.out")
    bystander = start("launch", "ddp", "--cpu", "--steps", "40", "--set", "training.log_interval=1",
                      "--run-dir", str(bystander_dir), cwd=tmp_path, log=tmp_path / "bystander.out")
    try:
        training = lambda d: (d / "logs" / "rank0.log").is_file() and "step " in (d / "logs" / "rank0.log").read_text()  # noqa: E731
        assert _wait_for(lambda: training(victim_dir) and training(bystander_dir), 180)
        assert len(processes_of(victim_dir)) >= 3  # torchrun + 2 ranks
        stopped_at = time.monotonic()
        victim.send_signal(signal.SIGINT)
        assert victim.wait(timeout=30) == 130
        assert time.monotonic() - stopped_at < 10
        assert not processes_of(victim_dir)
        assert bystander.poll() is None or bystander.returncode == 0  # untouched
        assert bystander.wait(timeout=240) == 0
        assert result(bystander_dir)["steps"] == 40
    finally:
        for proc in (victim, bystander):
            if proc.poll() is None:
                proc.kill()
