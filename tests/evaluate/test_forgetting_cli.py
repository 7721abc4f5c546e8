"""Forgetting, compare, the forgetting: hook and the CLI commands on a tiny model with a LoRA 'run'."""

from __future__ import annotations

import json

import pytest

from tunelab.cli.main import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def task_args(shared_data):
    return ["--task", f"sst2={shared_data}/sst2", "--task", f"mmlu={shared_data}/mmlu_subset,subjects=anatomy",
            "--task", f"dialogsum={shared_data}/dialogsum,metrics=rougeL",
            "--task", f"t0={shared_data}/t0_multitask_mix/rotten_tomatoes_Movie_Expressed_Sentiment.jsonl"]


def test_forgetting_cli_and_report(fake_run, peaked_model_dir, shared_data, tmp_path, home, capsys):
    out = tmp_path / "forgetting"
    rc = main(["forgetting", "--base", peaked_model_dir, "--tuned", str(fake_run), *task_args(shared_data),
               "--limit", "6", "--max-new-tokens", "4", "--bootstrap", "200", "--output", str(out)])
    assert rc == 0
    report = json.loads((out / "forgetting.json").read_text())
    assert report["summary"]["tuned_task"] == "sst2"  # from the run's config
    assert [r["task"] for r in report["tasks"]] == ["sst2", "mmlu", "dialogsum", "t0_rotten"]
    for r in report["tasks"]:
        assert r["n"] == 6 and len(r["ci"]) == 2 and 0 < r["p_value"] <= 1
        assert r["diff"] == pytest.approx(r["tuned"]["value"] - r["base"]["value"])
        # the difference and its CI are one statistic: the CI is around the number printed
        assert r["ci"][0] <= r["diff"] + 1e-12 <= r["ci"][1] + 2e-12
    assert report["summary"]["held_out_tasks"] == ["mmlu", "dialogsum", "t0_rotten"]
    # the adapter really changed the model: some per-example outputs differ
    base = [json.loads(line) for line in (out / "base" / "mmlu.examples.jsonl").read_text().splitlines()]
    tuned = [json.loads(line) for line in (out / "tuned" / "mmlu.examples.jsonl").read_text().splitlines()]
    assert [b["logprobs"] for b in base] != [t["logprobs"] for t in tuned]
    assert "Gain on the tuned task (sst2" in capsys.readouterr().out
    # compare: the base eval folder vs the tuned eval folder, with paired tests and the run's cost
    rc = main(["compare", str(out / "base"), str(out / "tuned"), "--output", str(tmp_path / "cmp")])
    assert rc == 0
    table = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert table["runs"] == ["base", "tuned"]
    row = next(r for r in table["rows"] if r["task"] == "mmlu" and r["metric"] == "acc")
    assert row["tests"][0] is None and 0 < row["tests"][1]["p_value"] <= 1


def test_eval_cli_with_run_and_compare_cost(fake_run, shared_data, tmp_path, home, capsys):
    rc = main(["eval", "--run", str(fake_run), "--task", f"mmlu={shared_data}/mmlu_subset,subjects=marketing",
               "--limit", "4", "--bootstrap", "100", "--output", str(fake_run / "eval")])
    assert rc == 0
    res = json.loads((fake_run / "eval" / "results.json").read_text())
    assert res["model"]["adapter"].endswith("final") and res["tasks"]["mmlu"]["n"] == 4
    assert "mmlu" in capsys.readouterr().out
    rc = main(["compare", str(fake_run), str(fake_run), "--output", str(tmp_path / "c2")])
    assert rc == 0
    table = json.loads((tmp_path / "c2" / "compare.json").read_text())
    assert table["costs"][0]["trainable_params"] == 4096 and table["costs"][0]["wall_s"] == 12.0
    rc = main(["report", str(fake_run)])
    assert rc == 0 and (fake_run / "report.html").exists()


def test_user_errors_are_one_line(tmp_path, capsys, shared_data):
    assert main(["eval", "--model", "x", "--output", str(tmp_path)]) == 2
    assert "no tasks" in capsys.readouterr().err
    assert main(["eval", "--model", "x", "--task", "sst3=foo", "--output", str(tmp_path)]) == 2
    assert "did you mean 'sst2'" in capsys.readouterr().err
    assert main(["eval", "--model", "x", "--task", f"sst2={tmp_path}/missing", "--output", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["forgetting", "--tuned", str(tmp_path), "--task", f"sst2={shared_data}/sst2"]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_forgetting_section_before_and_after(fake_run, peaked_model_dir, shared_data, tmp_path, home):
    from tunelab.config import load_config
    from tunelab.evaluate import forgetting_during_training

    cfg = load_config(data={
        "name": "tiny-lora", "model": {"name": peaked_model_dir},
        "data": {"tasks": [{"name": "sst2", "kind": "classification", "source": f"{shared_data}/sst2/sst2_glue_validation.tsv",
                            "fields": {"text": "sentence", "label": "label"}, "labels": {0: "negative", 1: "positive"}}]},
        "forgetting": {"tasks": ["sst2", f"mmlu={shared_data}/mmlu_subset,subjects=anatomy"], "limit": 4,
                      "tuned_task": "sst2", "bootstrap_resamples": 100, "generation": {"max_new_tokens": 4}}})
    before = forgetting_during_training(cfg, fake_run, "before")
    assert set(before["tasks"]) == {"sst2", "mmlu"}
    report = forgetting_during_training(cfg, fake_run, "after")
    assert (fake_run / "forgetting" / "forgetting.json").exists()
    assert report["summary"]["tuned_task"] == "sst2" and report["summary"]["held_out_tasks"] == ["mmlu"]
    # the bare name "sst2" is the training task, split exactly as the data pipeline splits it
    from tunelab.data import prepare
    from transformers import AutoTokenizer

    test = prepare(cfg, AutoTokenizer.from_pretrained(peaked_model_dir)).tasks["sst2"].splits["test"][:4]
    rows = [json.loads(x) for x in (fake_run / "forgetting" / "tuned" / "sst2.examples.jsonl").read_text().splitlines()]
    assert [r["source_index"] for r in rows] == [e.source_index for e in test]
    assert forgetting_during_training(cfg.model_copy(update={"forgetting": None}), fake_run, "after") is None


def test_package_exports_are_functions_whatever_was_imported_first():
    """The report imports the forgetting module first; the package names must still be functions."""
    import types

    import tunelab.evaluate.forgetting  # noqa: F401
    import tunelab.report.build  # noqa: F401
    from tunelab.evaluate import evaluate, forgetting_during_training, measure_forgetting

    functions = (evaluate, measure_forgetting, forgetting_during_training)
    assert all(callable(f) and not isinstance(f, types.ModuleType) for f in functions)
