"""A trade-off study on the tiny model: several methods and learning rates plus a remedy system,
each a real training run scored before and after, then one comparison and its report."""

import json
import sys
from pathlib import Path

import pytest

from tunelab.config import ConfigError, load_config
from tunelab.experiments.study import run_study

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))  # the report tests' page readers
from browser_check import render_and_check  # noqa: E402
from json_check import check_interpolation_curves, check_systems_figures, check_systems_tables  # noqa: E402
from page_check import read_page  # noqa: E402


def study_config(two_tasks):
    raw = dict(two_tasks(), name="tradeoff")
    sentiment, colour = raw["data"]["tasks"]
    raw["data"] = dict(raw["data"], tasks=[sentiment])  # tuned on sentiment; colour is held out
    raw["train"] = dict(raw["train"], max_steps=3)
    raw["forgetting"] = {"tasks": ["sentiment", {**colour, "ratios": {"train": 0, "validation": 0, "test": 1}}],
                         "limit": 8, "bootstrap_resamples": 50, "generation": {"max_new_tokens": 3}}
    # The mixture remedy trains on other colour items than the ones scored (the guard refuses overlap).
    other = [{"prompt": f"Item {i} is painted {c}. What colour is item {i}?", "completion": c}
             for i, c in enumerate(["red", "blue", "green", "yellow"] * 10, start=100)]
    raw["study"] = {"methods": {"lora": [1e-3, 3e-2], "full": [1e-3]},
                    "systems": {"lora-mixture": {"data.tasks": [sentiment, {**colour, "source": {"records": other}}],
                                                 "train.lr": 3e-2}}}
    return raw


def test_study_trains_every_system_and_compares_them(two_tasks, tmp_path):
    raw = study_config(two_tasks)
    root = run_study(load_config(data=raw), log=lambda m: None)
    systems = ["lora-lr0.001", "lora-lr0.03", "full-lr0.001", "lora-mixture"]
    assert sorted(p.name for p in (root / "runs").iterdir()) == sorted(systems)
    table = json.loads((root / "compare.json").read_text())
    assert table["runs"] == ["base"] + systems and table["tuned_task"] == "sentiment"
    for point, name in zip(table["trade_off"], systems):
        report = json.loads((root / "runs" / name / "forgetting" / "forgetting.json").read_text())
        rows = {r["task"]: r for r in report["tasks"]}
        # the study's numbers are each run's own forgetting report's
        assert point["gain"]["diff"] == pytest.approx(rows["sentiment"]["diff"])
        assert point["others"][0]["diff"] == pytest.approx(rows["colour"]["diff"])
        assert point["others"][0]["held_out"] == (name != "lora-mixture")  # the mixture trained on colour
    summaries = {n: json.loads((root / "runs" / n / "summary.json").read_text()) for n in systems}
    assert summaries["full-lr0.001"]["method"] == "full" and summaries["lora-lr0.03"]["method"] == "lora"
    html = (root / "report.html").read_text()
    assert "plot-trade-off" in html
    # Again: every system is kept, the comparison redone.
    assert run_study(load_config(data=raw), resume=True, log=lambda m: None) == root
    # A study without held-out tasks to measure is refused before any training.
    bad = dict(raw, name="bad", forgetting={"tasks": ["sentiment"]})
    with pytest.raises(ConfigError, match="at least one held-out task"):
        run_study(load_config(data=bad), log=lambda m: None)
    assert not (tmp_path / "runs" / "bad").exists()


def test_interpolated_systems_are_points_of_the_study_on_the_same_examples(two_tasks, tmp_path):
    raw = study_config(two_tasks)
    raw["name"] = "wise"
    raw["study"] = {"methods": {"full": [3e-2]},
                    "systems": {"full-l2sp": {"train.method": "full", "train.lr": 3e-2,
                                              "train.regularization": {"kind": "l2sp", "weight": 1.0}}},
                    "interpolation": {"systems": ["full-lr0.03"], "alphas": [0.5, 0.25]}}
    root = run_study(load_config(data=raw), log=lambda m: None)
    table = json.loads((root / "compare.json").read_text())
    assert table["runs"] == ["base", "full-lr0.03", "full-l2sp", "full-lr0.03 alpha=0.25", "full-lr0.03 alpha=0.5"]
    assert table["interpolation"] == {"systems": ["full-lr0.03"], "alphas": [0.25, 0.5]}
    trained, regularised, *sweep = table["trade_off"]
    assert "alpha" not in regularised and regularised["gain"]["n"] == trained["gain"]["n"]
    penalties = [e["penalty"] for e in map(json.loads, (root / "runs" / "full-l2sp" / "metrics.jsonl").open())
                 if "penalty" in e]
    assert len(penalties) == 3 and penalties[0] == 0.0 < penalties[-1]  # it trained with the penalty on
    assert "alpha" not in trained
    for point, alpha in zip(sweep, [0.25, 0.5]):
        assert point["alpha"] == alpha and point["interpolation_of"] == "full-lr0.03"
        # paired on the very examples the run's own forgetting report used, held-out flags as the run's
        assert point["gain"]["n"] == trained["gain"]["n"]
        assert [(o["task"], o["held_out"], o["n"]) for o in point["others"]] == \
            [(o["task"], o["held_out"], o["n"]) for o in trained["others"]]
        folder = root / "runs" / "full-lr0.03" / "interpolation" / f"alpha-{alpha:g}"
        results = json.loads((folder / "results.json").read_text())
        assert results["model"]["alpha"] == alpha
    # the answers move along the sweep (the tiny model's are garbage, but weights that changed
    # answer differently): a sweep that scored one model three times would not
    run = root / "runs" / "full-lr0.03"
    answers = [[json.loads(line)["prediction"] for task in ("sentiment", "colour")
                for line in (folder / f"{task}.examples.jsonl").open()]
               for folder in (run / "forgetting" / "base", run / "interpolation" / "alpha-0.5", run / "forgetting" / "tuned")]
    assert answers[1] != answers[0] and answers[1] != answers[2]
    # the page draws what compare.json holds: the regularised system and every alpha with their
    # paired CIs, and the curve through the reference, the alphas and the system as trained
    html_path = root / "report.html"
    render_and_check(html_path, tmp_path, ["Systems side by side", "Learning vs forgetting", "Per task", "Costs"],
                     {"plot-systems", "plot-systems-diffs", "plot-trade-off"})
    page = read_page(html_path, tmp_path)
    assert check_systems_tables(page, table) > 0
    assert check_systems_figures(page, table) >= len(table["trade_off"]) + 1
    assert check_interpolation_curves(page, table) == 1
    # `tunelab compare` of the study folder finds the same curve: the alphas come from the folders
    from tunelab.evaluate.compare import compare_runs

    again = compare_runs([root], n_resamples=50, tuned_task="sentiment")
    assert [(p["label"], p.get("alpha"), p.get("interpolation_of")) for p in again["trade_off"]] == \
        [(p["label"], p.get("alpha"), p.get("interpolation_of")) for p in table["trade_off"]]
    # again: nothing is scored twice (each alpha's results are cached)
    run_study(load_config(data=raw), resume=True, log=lambda m: None)
    rows = [json.loads(line) for f in (root / "runs").rglob("interpolation/*/*.examples.jsonl") for line in f.open()]
    assert len(rows) == 2 * 16 and all(r["cached"] for r in rows)
    # a system that is not in the study is refused before any training
    bad = dict(raw, name="bad", study={**raw["study"], "interpolation": {"systems": ["lora-lr1"]}})
    with pytest.raises(ConfigError, match="not among the study's systems"):
        run_study(load_config(data=bad), log=lambda m: None)
