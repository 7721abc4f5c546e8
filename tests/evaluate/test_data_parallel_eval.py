"""Data-parallel evaluation (issue: scale out): `tunelab eval` under `accelerate launch` with two CPU
processes writes what one process writes: every per-example row (prediction, scores,
log-likelihoods) in the same order, every metric and interval, and each cache item once.

One task per engine path: SST-2 scored by generation, MMLU by log-likelihood multiple choice (its
questions share a 38-token chat-template prefix, so the shared-prefix run is planned over every
question, not per process) and the perplexity of DialogSum summaries. 13 examples in batches of 4,
the first 5 already in the cache (a one-process run of 5 first, its cache copied for both): the
main process hands its cache entries to the other, and the 8 left split into unequal shares."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.cli.main import main
from tunelab.config.base import UserError
from tunelab.config.evaluate import GenerationConfig
from tunelab.evaluate.generation import generate
from tunelab.evaluate.harness import evaluate, read_examples
from tunelab.evaluate.loglikelihood import score_requests, score_shared_context, shared_prefix_runs
from tunelab.evaluate.shard import ONE, World

TASK_NAMES = ("sst2", "mmlu", "ppl")


def merged(score) -> list:
    """score(world) for both processes of two, in this one process (no process group is needed to
    pick a share): every item in exactly one share, merged back into one list."""
    first, second = score(World(0, 2)), score(World(1, 2))
    assert all((a is None) != (b is None) for a, b in zip(first, second))
    return [a if a is not None else b for a, b in zip(first, second)]


def test_the_shares_of_two_processes_are_the_one_process_batches(tiny_model_dir):
    """Each process runs its batches of the one-process plan, so the merged shares equal one
    process's outputs bit for bit: generation, answer log-likelihoods, and multiple choice whose
    shared-prefix run spans both shares (11 items in batches of 3: shares of 6 and 5)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    contexts = [list(range(100, 120)) + [200 + i] * (1 + i % 5) for i in range(11)]
    assert shared_prefix_runs(contexts)[0][0] == 20
    groups = [(c, [[300], [301, 302], [303, 304, 305]]) for c in contexts]
    pad = tokenizer.pad_token_id
    assert merged(lambda w: score_shared_context(model, groups, 3, pad, world=w)) == \
        score_shared_context(model, groups, 3, pad, world=ONE)
    requests = [(c, [301, 302]) for c in contexts]
    assert merged(lambda w: score_requests(model, requests, 3, pad, world=w)) == score_requests(model, requests, 3, pad)
    settings = GenerationConfig(max_new_tokens=5)
    assert merged(lambda w: generate(model, tokenizer, contexts, settings, 3, world=w)) == \
        generate(model, tokenizer, contexts, settings, 3)


def test_lm_eval_tasks_are_refused_under_several_processes(tiny_model_dir):
    with pytest.raises(UserError, match="one process"):
        evaluate(tiny_model_dir, [], lm_eval={"tasks": ["x"]}, world=World(0, 2))


def eval_args(shared_data: Path, model: str, out: Path, limit: int = 13) -> list[str]:
    return ["eval", "--model", model,
            "--task", f"sst2={shared_data}/sst2,max_new_tokens=4",
            "--task", f"mmlu={shared_data}/mmlu_subset,subjects=anatomy",
            "--task", f"dialogsum={shared_data}/dialogsum,eval_kind=perplexity,name=ppl",
            "--limit", str(limit), "--batch-size", "4", "--bootstrap", "200", "--output", str(out)]


def launch_two_processes(args: list[str], home: Path) -> subprocess.CompletedProcess:
    """`tunelab ARGS` under `accelerate launch` with two CPU processes (docs/evaluation.md's command;
    --multi_gpu with no GPU gives CPU processes on gloo)."""
    launcher = Path(sys.executable).parent / "accelerate"
    if not launcher.exists():
        if os.environ.get("CI"):  # make test installs accelerate: a skip would hide a broken setup
            raise AssertionError(f"{launcher} is missing")
        pytest.skip("the accelerate launcher is not installed next to this Python")
    # One thread per process, as the in-process run (tests/evaluate/conftest.py); a port of its own,
    # so a training test launching at the same time does not collide with this one.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "TUNELAB_HOME": str(home)}
    return subprocess.run([str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
                           "-m", "tunelab.cli", *args], env=env, capture_output=True, text=True, timeout=600)


def cache_items(home: Path) -> dict[str, list[tuple[str, str]]]:
    """Each cache file's (item key, value) lines, in file order."""
    return {f.name: [(row["k"], json.dumps(row["v"], sort_keys=True)) for row in map(json.loads, open(f))]
            for f in sorted((home / "eval-cache").glob("*.jsonl"))}


@pytest.mark.slow
def test_two_processes_give_the_one_process_results(tmp_path, peaked_model_dir, shared_data, monkeypatch):
    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "home1"))
    assert main(eval_args(shared_data, peaked_model_dir, tmp_path / "first", limit=5)) == 0
    shutil.copytree(tmp_path / "home1", tmp_path / "home2")  # the same cache before each run
    assert main(eval_args(shared_data, peaked_model_dir, tmp_path / "one")) == 0
    done = launch_two_processes(eval_args(shared_data, peaked_model_dir, tmp_path / "two"), tmp_path / "home2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("results: ") == 1  # the main process alone prints

    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["work"]["processes"] == 2 and two["work"]["model_loads"] == 2
    for name in TASK_NAMES:
        rows = read_examples(tmp_path / "two", name)
        assert [r["index"] for r in rows] == list(range(13))
        assert rows == read_examples(tmp_path / "one", name)  # every field of every row, in order
        a, b = one["tasks"][name], two["tasks"][name]
        assert b["metrics"] == a["metrics"]  # values, intervals, n: computed from the whole list
        assert (b["n"], b["example_keys_sha256"], b["primary_metric"]) == (a["n"], a["example_keys_sha256"],
                                                                           a["primary_metric"])
    assert [r["cached"] for r in read_examples(tmp_path / "two", "sst2")] == [True] * 5 + [False] * 8
    assert all(len(r["logprobs"]) == 4 for r in read_examples(tmp_path / "two", "mmlu"))
    assert len({r["prediction"] for r in read_examples(tmp_path / "two", "sst2")}) > 1  # not all alike

    # The main process is the one writer: every item once, with the value one process computed.
    mine, theirs = cache_items(tmp_path / "home1"), cache_items(tmp_path / "home2")
    assert sorted(len(items) for items in theirs.values()) == [13, 26]  # generation; MMLU + perplexity
    for file, items in theirs.items():
        assert len({key for key, _ in items}) == len(items)
        assert sorted(items) == sorted(mine[file])
