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
