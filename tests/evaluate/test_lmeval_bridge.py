"""The lm-evaluation-harness bridge (tunelab.evaluate.lmeval): lm-eval tasks by name through lm-eval's
own HF wrapper, their per-example rows in tunelab's files, paired like native tasks.

The lm-eval task is a local YAML over one MMLU subject of ../shared/data/mmlu_subset with lm-eval's
own MMLU template (read from the installed package, as benchmarks/lmeval_mmlu_parity.py does), so
everything runs offline."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from tunelab.cli.main import main
from tunelab.config.base import UserError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from lmeval_mmlu_parity import write_lm_eval_tasks  # noqa: E402


def need_lm_eval() -> None:
    if importlib.util.find_spec("lm_eval") is None:
        message = "lm_eval is not installed: pip install 'tunelab[lmeval]' (also in the test extra)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)  # CI must run the bridge, not skip it
        pytest.skip(message)


def write_mmlu_task(folder: Path, data: Path, subject: str = "anatomy") -> str:
    """A local lm-eval task `mmlu_local_<subject>`: lm-eval's MMLU template over the CSVs, written
    as the parity benchmark writes its own."""
    return write_lm_eval_tasks(folder, data, [subject], prefix="mmlu_local_")[0]


def rows_of(folder: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{task}.examples.jsonl").read_text().splitlines()]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_missing_lm_eval_is_one_line_before_the_model_loads(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from tunelab.evaluate.generation import WorkCounter
    from tunelab.evaluate.harness import evaluate

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # `import lm_eval` raises ImportError, as when absent
    counter = WorkCounter()
    with pytest.raises(UserError, match=r"pip install 'tunelab\[lmeval\]'"):
        evaluate(tiny_model_dir, [], lm_eval={"tasks": ["arc_easy"]}, counter=counter, output_dir=tmp_path / "x")
    assert counter.model_loads == 0 and not (tmp_path / "x").exists()
    rc = main(["eval", "--model", tiny_model_dir, "--lm-eval", "arc_easy", "--output", str(tmp_path / "y")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "pip install 'tunelab[lmeval]'" in err[0]


def test_config_keys_and_flags(tmp_path):
    """eval.lm_eval / forgetting.lm_eval keys; flags win; the config's include is relative to its folder."""
    import argparse

    from tunelab.cli.eval import add_arguments, eval_settings
    from tunelab.config.evaluate import EvalConfig, ForgettingConfig

    assert EvalConfig(lm_eval={"tasks": "a, b", "include": "t"}).lm_eval.tasks == ["a", "b"]
    assert ForgettingConfig(lm_eval={"tasks": ["hellaswag"], "num_fewshot": 5}).lm_eval.num_fewshot == 5
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"name": "m"},
                                   "eval": {"lm_eval": {"tasks": ["x", "y,z"], "include": "mine"}}}))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    _, kwargs = eval_settings(parser.parse_args(["--config", str(cfg), "-o", "o"]))
    assert kwargs["lm_eval"] == {"tasks": ["x", "y", "z"], "include": str(tmp_path / "mine"), "num_fewshot": None}
    args = parser.parse_args(["--config", str(cfg), "-o", "o", "--lm-eval", "q,r", "--lm-eval-fewshot", "2"])
    tasks, kwargs = eval_settings(args)  # command-line tasks replace the config's
    assert tasks == [] and kwargs["lm_eval"] == {"tasks": ["q", "r"], "include": None, "num_fewshot": 2}


def test_unsupported_lm_eval_task_is_refused_before_the_model_loads(tiny_model_dir, tmp_path):
    need_lm_eval()
    from tunelab.evaluate.generation import WorkCounter
    from tunelab.evaluate.harness import evaluate

    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "rolling.yaml").write_text(yaml.safe_dump({
        "task": "local_rolling", "dataset_path": "json", "test_split": "train", "output_type": "loglikelihood_rolling",
        "dataset_kwargs": {"data_files": {"train": str(tmp_path / "docs.jsonl")}},
        "doc_to_text": "", "doc_to_target": "{{text}}", "metric_list": [{"metric": "word_perplexity"}]}))
    (tmp_path / "docs.jsonl").write_text('{"text": "a b c"}\n')
    counter = WorkCounter()
    with pytest.raises(UserError, match="local_rolling.*loglikelihood_rolling"):
        evaluate(tiny_model_dir, [], lm_eval={"tasks": ["local_rolling"], "include": str(folder)}, counter=counter)
    assert counter.model_loads == 0


def test_generation_task_with_two_filters(tiny_model_dir, tmp_path, home):
    """generate_until: the prediction per lm-eval filter, one metric per filter ("metric,filter")."""
    need_lm_eval()
    from tunelab.evaluate.harness import evaluate

    (tmp_path / "qa.jsonl").write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in
                                               [("capital of France?", "Paris"), ("2+2?", "4"), ("sky?", "blue")]))
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "qa.yaml").write_text(yaml.safe_dump({
        "task": "local_qa", "dataset_path": "json", "test_split": "test", "output_type": "generate_until",
        "dataset_kwargs": {"data_files": {"test": str(tmp_path / "qa.jsonl")}},
        "doc_to_text": "Q: {{question}}\nA:", "doc_to_target": "{{answer}}",
        "generation_kwargs": {"until": ["\n"], "max_gen_toks": 4, "do_sample": False},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "filter_list": [{"name": "word", "filter": [{"function": "regex", "regex_pattern": "(\\w+)"},
                                                    {"function": "take_first"}]},
                        {"name": "raw", "filter": [{"function": "take_first"}]}]}))
    import random

    import torch

    states = random.getstate(), torch.get_rng_state()
    res = evaluate(tiny_model_dir, [], lm_eval={"tasks": "local_qa", "include": str(folder)}, output_dir=tmp_path / "o",
                   n_resamples=50)["tasks"]["local_qa"]
    # lm-eval seeds the global generators; the caller's (a training run's) streams are left as they were
    assert random.getstate() == states[0] and torch.equal(torch.get_rng_state(), states[1])
    assert res["kind"] == "generate" and res["primary_metric"] == "exact_match,word"
    assert list(res["metrics"]) == ["exact_match,word", "exact_match,raw"]
    assert res["generation"]["max_gen_toks"] == 4
    for metric, entry in res["metrics"].items():
        assert entry["n"] == 3 and entry["value"] == pytest.approx(entry["lm_eval_value"])
    rows = rows_of(tmp_path / "o", "local_qa")
    assert [r["references"] for r in rows] == [["Paris"], ["4"], ["blue"]]
    assert all(set(r["predictions"]) == {"word", "raw"} and r["prediction"] == r["predictions"]["word"] for r in rows)
    assert all(r["scores"]["exact_match,raw"] == float(r["predictions"]["raw"] == r["target"]) for r in rows)


def test_forgetting_and_compare_pair_an_lm_eval_task(fake_run, peaked_model_dir, shared_data, tmp_path, home):
    need_lm_eval()
    name = write_mmlu_task(tmp_path / "tasks", shared_data / "mmlu_subset")
    out = tmp_path / "forgetting"
    rc = main(["forgetting", "--base", peaked_model_dir, "--tuned", str(fake_run), "--lm-eval", name,
               "--lm-eval-include", str(tmp_path / "tasks"), "--limit", "8", "--bootstrap", "200",
               "--output", str(out)])
    assert rc == 0
    base, tuned = (json.loads((out / side / "results.json").read_text())["tasks"][name] for side in ("base", "tuned"))
    for entry in (base, tuned):
        assert entry["source"] == "lm-eval" and entry["n"] == 8 and entry["primary_metric"] == "acc"
        assert entry["contamination"]["checked"] is False and "not checked" in entry["contamination"]["note"]
        acc = entry["metrics"]["acc"]
        assert acc["value"] == pytest.approx(acc["lm_eval_value"]) and acc["ci"][0] <= acc["value"] <= acc["ci"][1]
        assert entry["lm_eval"]["version"] and len(entry["lm_eval"]["config_sha256"]) == 64
    assert base["lm_eval"]["config_sha256"] == tuned["lm_eval"]["config_sha256"]  # stable across processes' reprs
    base_rows, tuned_rows = rows_of(out / "base", name), rows_of(out / "tuned", name)
    assert [r["key"] for r in base_rows] == [r["key"] for r in tuned_rows]  # doc id + doc hash: they pair
    assert [r["logprobs"] for r in base_rows] != [r["logprobs"] for r in tuned_rows]  # lm-eval scored the adapter
    for r in tuned_rows:
        assert r["choices"] == [" A", " B", " C", " D"] and r["prompt"].endswith("\nAnswer:")
        assert r["prediction"] == r["choices"][max(range(4), key=r["logprobs"].__getitem__)]
        assert r["scores"]["acc"] == float(r["prediction"] == r["references"][0])
    report = json.loads((out / "forgetting.json").read_text())
    row = next(r for r in report["tasks"] if r["task"] == name)
    assert row["n"] == 8 and row["paired_on"] == "per-example acc" and "mcnemar" in row
    assert row["diff"] == pytest.approx(row["tuned"]["value"] - row["base"]["value"])
    assert report["summary"]["held_out_change_tasks"] == [name]  # a held-out task like any other
    assert main(["compare", str(out / "base"), str(out / "tuned"), "--output", str(tmp_path / "cmp")]) == 0
    table = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    test = next(r for r in table["rows"] if r["task"] == name and r["metric"] == "acc")["tests"][1]
    assert test["diff"] == pytest.approx(row["diff"]) and 0 < test["p_value"] <= 1


def test_forgetting_section_scores_lm_eval_tasks(fake_run, peaked_model_dir, shared_data, tmp_path, home):
    """forgetting.lm_eval in a training config: checked before training, scored before and after."""
    need_lm_eval()
    import shutil

    from tunelab.config import load_config
    from tunelab.evaluate import forgetting_during_training
    from tunelab.evaluate.forgetting import check_forgetting_tasks

    run = tmp_path / "run"
    shutil.copytree(fake_run, run)  # the session's fake run stays as it is
    name = write_mmlu_task(tmp_path / "cfg" / "tasks", shared_data / "mmlu_subset")
    raw = {"name": "tiny-lora", "model": {"name": peaked_model_dir},
           "data": {"tasks": [{"name": "sst2", "kind": "classification",
                               "source": f"{shared_data}/sst2/sst2_glue_validation.tsv",
                               "fields": {"text": "sentence", "label": "label"},
                               "labels": {0: "negative", 1: "positive"}}]},
           "forgetting": {"lm_eval": {"tasks": [name], "include": "tasks"}, "limit": 4, "bootstrap_resamples": 100}}
    cfg = load_config(data=raw)
    cfg.config_dir = str(tmp_path / "cfg")  # as if read from cfg/exp.yaml: include is relative to it
    check_forgetting_tasks(cfg)
    report = forgetting_during_training(cfg, run, "after")  # the tuned run, then the base (before was skipped)
    assert [r["task"] for r in report["tasks"]] == [name] and report["tasks"][0]["n"] == 4
    assert report["summary"]["held_out_tasks"] == [name]
    raw["forgetting"]["lm_eval"]["include"] = "nowhere"
    cfg = load_config(data=raw)
    with pytest.raises(UserError, match="nowhere: no such folder"):
        check_forgetting_tasks(cfg)  # before training starts


@pytest.mark.slow
def test_lm_eval_bridge_matches_tunelab_scorer_on_mmlu(smollm2_dir, shared_data, tmp_path):
    """`tunelab eval --lm-eval` on SmolLM2: the same prompts, the same predicted letter on every
    question and the same acc as tunelab's own log-likelihood scorer (mmlu recipe, style=lm_eval)."""
    need_lm_eval()
    import torch

    data = shared_data / "mmlu_subset"
    name = write_mmlu_task(tmp_path / "tasks", data)
    out = tmp_path / "eval"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # one model load, two passes over 20 questions
    try:
        rc = main(["eval", "--model", smollm2_dir, "--task", f"mmlu={data},subjects=anatomy,style=lm_eval",
                   "--lm-eval", name, "--lm-eval-include", str(tmp_path / "tasks"), "--limit", "20", "--no-cache",
                   "--bootstrap", "200", "--output", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    results = json.loads((out / "results.json").read_text())["tasks"]
    ours, theirs = rows_of(out, "mmlu"), rows_of(out, name)
    assert len(ours) == len(theirs) == 20
    for a, b in zip(ours, theirs):
        assert a["prompt"] == b["prompt"] and a["choices"] == b["choices"]
        assert a["prediction"] == b["prediction"] and a["scores"]["acc"] == b["scores"]["acc"]
        assert max(abs(x - y) for x, y in zip(a["logprobs"], b["logprobs"])) <= 1e-4
    assert results[name]["metrics"]["acc"]["value"] == results["mmlu"]["metrics"]["acc"]["value"]
    assert results[name]["metrics"]["acc"]["lm_eval_value"] == pytest.approx(results["mmlu"]["metrics"]["acc"]["value"])
    assert (out / "lm_eval.log").exists()
