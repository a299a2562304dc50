"""ds_configs/ is what `make configs` would write today."""

from __future__ import annotations

import json

from launcher.render.reference import REFERENCE, reference_files, write
from launcher.spec.catalog import load_strategy, names

from .conftest import REPO


def test_ds_configs_are_fresh():
    on_disk = {p.relative_to(REPO / "ds_configs").as_posix(): p.read_text()
               for p in (REPO / "ds_configs").rglob("*.json")}
    expected = reference_files()
    stale = sorted(k for k in expected.keys() | on_disk.keys() if expected.get(k) != on_disk.get(k))
    assert not stale, f"stale ds_configs (run `make configs`): {stale}"


def test_every_deepspeed_strategy_has_a_reference_file():
    deepspeed = {n for n in names() if load_strategy(n).engine == "deepspeed"}
    plain = {k.removesuffix(".json") for k in reference_files() if "/" not in k}
    assert plain == deepspeed
    zero3 = json.loads(reference_files()["zero3.json"])
    assert zero3["train_batch_size"] == zero3["train_micro_batch_size_per_gpu"] * REFERENCE.world_size


def test_write_removes_files_of_deleted_strategies(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "gone.json").write_text("{}")
    written = write(tmp_path)
    assert not (tmp_path / "hf" / "gone.json").exists()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json")) == written
