"""Replay sampling: exact counts, no duplicates, deterministic across processes."""

import subprocess
import sys

import pytest

from tunelab.config import ConfigError, load_config
from tunelab.experiments.replay import replay_count, sample_replay


def test_counts_are_exact():
    assert replay_count(200, fraction=0.1) == 20
    assert replay_count(7, fraction=0.5) == 4  # round half up
    assert replay_count(3, fraction=0.01) == 1  # a positive fraction replays at least one
    assert replay_count(50, count=20) == 20
    assert replay_count(5, count=20) == 5  # capped at the pool
    assert replay_count(0, fraction=0.3) == 0
    with pytest.raises(ValueError):
        replay_count(10, fraction=0.1, count=2)
    with pytest.raises(ValueError):
        replay_count(10, fraction=1.5)


def test_sample_is_subset_in_source_order_and_seeded():
    pools = {"sst2": list(range(100)), "dialogsum": [f"d{i}" for i in range(40)]}
    a = sample_replay(pools, fraction=0.25, seed=3)
    assert len(a["sst2"]) == 25 and len(a["dialogsum"]) == 10
    assert a["sst2"] == sorted(set(a["sst2"]))  # no duplicates, source order
    assert set(a["dialogsum"]) <= set(pools["dialogsum"])
    assert sample_replay(pools, fraction=0.25, seed=3) == a
    assert sample_replay(pools, fraction=0.25, seed=4)["sst2"] != a["sst2"]
    # one task's sample does not depend on which other tasks are in the pool
    assert sample_replay({"sst2": pools["sst2"]}, fraction=0.25, seed=3)["sst2"] == a["sst2"]


def test_sample_identical_in_another_process():
    code = (
        "from tunelab.experiments.replay import sample_replay;"
        "print(sample_replay({'t': list(range(1000))}, count=15, seed=11)['t'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(sample_replay({"t": list(range(1000))}, count=15, seed=11)["t"])


def test_replay_config_needs_exactly_one_of_fraction_or_count():
    with pytest.raises(ConfigError, match="exactly one"):
        load_config(data={"stages": [{"tasks": ["a"], "replay": {"fraction": 0.1, "count": 3}}]})
    with pytest.raises(ConfigError, match="stages.0.tasks"):
        load_config(data={"stages": [{"tasks": []}]})
    with pytest.raises(ConfigError, match="did you mean 'fraction'"):
        load_config(data={"stages": [{"tasks": ["a"], "replay": {"fracton": 0.1}}]})
