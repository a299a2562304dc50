"""A few of each concurrency and failure trial (tests/trials.py) on this machine; `make stress` runs many."""

from __future__ import annotations

import random

import pytest

from . import trials

pytestmark = pytest.mark.slow
TRIALS = 2


@pytest.mark.parametrize("index", range(TRIALS))
def test_two_launches_at_the_same_instant_each_get_their_own_run(tmp_path, index):
    row = trials.same_instant(tmp_path, index)
    assert row["exits"] == [0, 0], row["stderr"]
    assert (row["run_dirs"], row["ports"], row["results"], row["own_records"]) == (2, 2, 2, True)


@pytest.mark.parametrize("index", range(TRIALS))
def test_ctrl_c_of_one_job_leaves_the_other_training(tmp_path, index):
    row = trials.ctrl_c_one(tmp_path, index)
    assert (row["a_exit"], row["a_gone"], row["orphans"]) == (130, True, 0), row
    assert row["b_moved_after"] and row["b_exit"] == 0, row


@pytest.mark.parametrize("index", range(TRIALS))
def test_kill_9_of_a_random_rank_ends_the_job_names_the_rank_and_leaves_nothing(tmp_path, index):
    row = trials.kill_rank(tmp_path, index, random.Random(index))
    assert row["found"] and row["gone"] and row["named"] and row["orphans"] == 0, row
    assert row["exit"] != 0
