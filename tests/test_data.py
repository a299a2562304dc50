"""`launchdeck data prepare` and the payload's input pipeline: a token file holds exactly the text the payload
would read, its index finds every document, and DataLoader workers serve the batches the loop would build."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from launcher.cli import main
from launcher.data import tokens
from launcher.payload.train.data import Batches, load_corpus
from launcher.payload.train.loader import Loader

DOCS = st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=12)


def _prepare(tmp_path, *texts: str, out: str = "t.bin") -> str:
    with pytest.raises(SystemExit) as info:
        main(["data", "prepare", *texts, "-o", str(tmp_path / out)])
    assert info.value.code == 0
    return str(tmp_path / out)


@settings(max_examples=25, deadline=None)
@given(records=DOCS, plain=st.text(min_size=1, max_size=5000))
def test_a_token_file_holds_the_text_the_payload_reads_and_finds_every_document(tmp_path_factory, records, plain):
    tmp = tmp_path_factory.mktemp("prep")
    (tmp / "a.txt").write_text(plain * (4096 // len(plain.encode()) + 1))
    (tmp / "b.jsonl").write_text("".join(json.dumps({"text": r}) + "\n" for r in records))
    prepared = load_corpus(_prepare(tmp, str(tmp / "a.txt"), str(tmp / "b.jsonl")))
    oracle = np.concatenate([load_corpus(str(tmp / "a.txt")), load_corpus(str(tmp / "b.jsonl"), limit=10**9)
                             if (tmp / "b.jsonl").stat().st_size >= 4096 else _jsonl_bytes(records)])
    assert isinstance(prepared, np.memmap) and np.array_equal(prepared, oracle)
    offsets = np.fromfile(tmp / "t.idx", dtype="<u8", offset=tokens.HEADER.size)
    starts = [0, (tmp / "a.txt").stat().st_size]
    for record in records[:-1]:
        starts.append(starts[-1] + len(record.encode("utf-8", "surrogatepass")) + 2)
    assert offsets.tolist() == [*starts, prepared.size]


def _jsonl_bytes(records: list[str]) -> np.ndarray:
    return np.frombuffer("\n\n".join(records).encode("utf-8", "surrogatepass"), dtype=np.uint8)


def test_a_failed_prepare_leaves_nothing_behind(tmp_path):
    (tmp_path / "a.txt").write_text("x" * 5000)
    (tmp_path / "b.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(SystemExit) as info:
        main(["data", "prepare", str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl"), "-o", str(tmp_path / "t.bin")])
    assert info.value.code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.jsonl"]


def test_data_workers_serve_the_batches_the_loop_would_build(tmp_path):
    (tmp_path / "a.txt").write_bytes(bytes(range(256)) * 64)
    corpus = load_corpus(_prepare(tmp_path, str(tmp_path / "a.txt")))
    batches = Batches(corpus, 16, 2, seed=5, dp_rank=1, dp_size=2, global_batch=8)  # 2 micro steps per step
    loader = Loader(batches, steps=6, workers=2, prefetch=2, pin=False)
    order = [(1, 0), (1, 1), (2, 0), (2, 1), (4, 1), (5, 0), (5, 1), (0, 0)]  # a skip ahead, then back
    try:
        for step, micro in order:
            assert all(torch.equal(a, b) for a, b in zip(loader.get(step, micro), batches.get(step, micro),
                                                                  strict=True))
        workers = list(loader._iterator._workers)
    finally:
        loader.close()
    assert loader.wait_s > 0
    assert len(workers) == 2 and not any(worker.is_alive() for worker in workers)  # close stops them, now
