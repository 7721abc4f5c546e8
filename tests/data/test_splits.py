"""Seeded splits: identical across processes, stratified within one example of exact."""

import subprocess
import sys

from tunelab.data.splits import largest_remainder, split_indices, stratified_counts

SCRIPT = """
import json, sys
from tunelab.data.splits import split_indices
strata = [str(i % 3) for i in range(1000)]
print(json.dumps(split_indices(1000, {"train": 0.7, "validation": 0.2, "test": 0.1}, 11, "task", strata)))
"""


def test_same_seed_two_processes_byte_identical():
    outs = [subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, check=True,
                           env={"PYTHONHASHSEED": str(h), "PATH": ""}).stdout for h in (1, 2)]
    assert outs[0] == outs[1] and len(outs[0]) > 1000
    other = split_indices(1000, {"train": 0.7, "validation": 0.2, "test": 0.1}, 12, "task",
                          [str(i % 3) for i in range(1000)])
    assert outs[0].decode().strip() != str(other)


def test_partition_is_complete_and_disjoint():
    parts = split_indices(101, {"train": 0.8, "validation": 0.1, "test": 0.1}, 0, "x")
    all_ix = sorted(i for v in parts.values() for i in v)
    assert all_ix == list(range(101))
    assert {k: len(v) for k, v in parts.items()} == largest_remainder(101, {"train": 0.8, "validation": 0.1, "test": 0.1})


def test_stratified_counts_within_one_of_exact():
    ratios = {"train": 0.8, "validation": 0.1, "test": 0.1}
    for sizes in ({"pos": 444, "neg": 428}, {"a": 7, "b": 3, "c": 1, "d": 13}, {"x": 1}, {"a": 5, "b": 5, "c": 5}):
        counts = stratified_counts(sizes, ratios)
        total = sum(sizes.values())
        for s, n in sizes.items():
            assert sum(counts[s].values()) == n
            for k, r in ratios.items():
                assert abs(counts[s][k] - n * r) < 1, (sizes, s, k, counts)
        for k, r in ratios.items():
            assert abs(sum(counts[s][k] for s in sizes) - total * r) < 1 + 1e-9, (sizes, k, counts)


def test_split_indices_are_stratified():
    labels = ["pos"] * 444 + ["neg"] * 428
    parts = split_indices(len(labels), {"train": 0.8, "validation": 0.1, "test": 0.1}, 42, "sst2", labels)
    for split, ratio in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        for label, n in (("pos", 444), ("neg", 428)):
            got = sum(labels[i] == label for i in parts[split])
            assert abs(got - n * ratio) < 1, (split, label, got)


PREPARE_SCRIPT = """
import hashlib, json
from transformers import AutoTokenizer
from tunelab.config import load_config
from tunelab.data import prepare
from tunelab.models import resolve_model
cfg = load_config("examples/preview.yaml", ["seed=123"])
data = prepare(cfg, AutoTokenizer.from_pretrained(resolve_model(cfg.model.name)))
dump = {name: {s: [[ex.source, ex.input_ids, ex.label_ids] for ex in exs] for s, exs in t.splits.items()}
        for name, t in data.tasks.items()}
dump["epoch1"] = [[ex.task, ex.source] for ex in data.train_epoch(1)]
print(hashlib.sha256(json.dumps(dump).encode()).hexdigest(), len(dump["epoch1"]))
"""


def test_prepared_examples_and_epoch_order_identical_in_two_processes():
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", PREPARE_SCRIPT], cwd=root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env={**os.environ, "PYTHONHASHSEED": str(h)})
             for h in (0, 99)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][1][-2000:]
    assert outs[0][0] == outs[1][0] and int(outs[0][0].split()[1]) > 40
