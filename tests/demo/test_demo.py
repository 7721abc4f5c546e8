"""`tunelab demo`: the built-in data is sound, and the quick path runs the whole orchestration.

The quick run uses the tiny random Llama: its numbers mean nothing, but every phase (base eval,
three training runs, forgetting reports, results JSON, report.html) must run and be wired right.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from tunelab.experiments.demo import DATA_DIR, qa_task, sentiment_task


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def test_sentiment_data_is_balanced_varied_and_unique():
    rows = _jsonl(DATA_DIR / "sentiment.jsonl")
    assert len(rows) == 320
    assert Counter(r["label"] for r in rows) == {"positive": 160, "negative": 160}
    texts = [_norm(r["text"]) for r in rows]
    assert len(set(texts)) == len(texts), "normalised duplicates would be flagged by the leak check"
    # Not template-generated: few reviews share their first three words.
    starts = Counter(" ".join(t.split()[:3]) for t in texts)
    assert starts.most_common(1)[0][1] <= 6


def test_qa_data_has_short_answers_and_aliases():
    rows = _jsonl(DATA_DIR / "qa.jsonl")
    assert len(rows) == 100
    assert len({_norm(r["question"]) for r in rows}) == 100
    assert all(r["answers"] and all(1 <= len(a.split()) <= 3 for a in r["answers"]) for r in rows)
    assert sum(len(r["answers"]) > 1 for r in rows) >= 30


def test_tasks_build_through_the_data_pipeline(tokenizer):
    from tunelab.config.data import TaskConfig
    from tunelab.data import build_task

    sent = build_task(TaskConfig.model_validate(sentiment_task()), tokenizer, seed=3)
    sizes = {k: len(v) for k, v in sent.splits.items()}
    assert sum(sizes.values()) == 320 and sizes["test"] >= 100 and sizes["train"] >= 180
    test_labels = Counter(ex.label for ex in sent.splits["test"])
    assert abs(test_labels["positive"] - test_labels["negative"]) <= 1  # stratified
    assert sent.leaks and all(v == {"exact": 0, "normalised": 0} for v in sent.leaks.values())
    qa = build_task(TaskConfig.model_validate(qa_task()), tokenizer, seed=3)
    assert len(qa.splits["train"]) == 40 and len(qa.splits["test"]) == 60
    ex = qa.splits["test"][0]
    assert ex.references[0] == ex.target_text and "<|im_start|>assistant" in ex.prompt_text


def test_quick_demo_runs_every_phase(tiny_model_dir, tmp_path, capsys):
    from tunelab.cli.main import main

    rc = main(["demo", "--quick", "--seed", "5", "--output", str(tmp_path), "--model", tiny_model_dir])
    assert rc == 0
    out = capsys.readouterr().out
    (folder,) = list(tmp_path.glob("demo-seed5-*"))
    results = json.loads((folder / "results.json").read_text())
    assert set(results["systems"]) == {"base", "lora-sentiment", "lora-mixture", "full-sentiment", "lora-then-qa",
                                       "full-then-qa"}
    for name, system in results["systems"].items():
        assert 0.0 <= system["sentiment"]["accuracy"]["value"] <= 1.0
        assert system["n"] == {"sentiment": 6, "qa": 6}
        if name != "base":
            assert system["cost"]["steps"] == 2
            assert set(system["vs_base"]) == {"sentiment", "qa"}
            assert system["vs_base"]["qa"]["metric"] == "token_f1"  # the QA column's metric
            lo, hi = system["vs_base"]["qa"]["ci"]
            assert lo <= system["vs_base"]["qa"]["diff"] <= hi
    # LoRA trains a small fraction of the weights, full fine-tuning all of them.
    lora, full = results["systems"]["lora-sentiment"]["cost"], results["systems"]["full-sentiment"]["cost"]
    assert lora["trainable_params"] < full["trainable_params"] == full["total_params"]
    # The mixture run trained on both tasks; the single-task runs on sentiment only.
    mix_cfg = (folder / "lora-mixture" / "config.resolved.yaml").read_text()
    single_cfg = (folder / "lora-sentiment" / "config.resolved.yaml").read_text()
    assert "name: qa" in mix_cfg and "name: qa" not in single_cfg
    # A second stage trains QA only, from the first stage's model (LoRA: its adapter merged into the
    # base); its sentiment is paired with the first stage's on the same reviews.
    for second, first, start in (("lora-then-qa", "lora-sentiment", folder / "lora-sentiment" / "merged"),
                                 ("full-then-qa", "full-sentiment", folder / "full-sentiment" / "final")):
        cfg = (folder / second / "config.resolved.yaml").read_text()
        assert "name: qa" in cfg and "name: sentiment" not in cfg and f"name: {start}" in cfg
        s2, s1 = results["systems"][second], results["systems"][first]
        assert s2["after"] == first and s2["trained_on"] == ["qa"]
        d = s2["vs_previous"]["sentiment"]
        acc1, acc2 = s1["sentiment"]["accuracy"]["value"], s2["sentiment"]["accuracy"]["value"]
        assert d["metric"] == "accuracy" and abs(d["diff"] - (acc2 - acc1)) < 1e-9 and d["ci"][0] <= d["diff"] <= d["ci"][1]
        assert s2["vs_base"]["sentiment"]["diff"] == pytest.approx(acc2 - results["systems"]["base"]["sentiment"]["accuracy"]["value"])
    forgetting = json.loads((folder / "full-then-qa" / "forgetting" / "forgetting.json").read_text())
    assert forgetting["base"] == Path(tiny_model_dir).name  # its base results are the base model's, not stage 1's
    assert "cost of a second task on sentiment accuracy: LoRA, sentiment then QA: " in out
    # The demo's report: every system side by side, rendered in Chromium (screenshot checked):
    # metric bars, the gain-vs-forgetting plot, per-task and cost tables, a link to each run's report.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
    from browser_check import render_and_check

    text = render_and_check(folder / "report.html", tmp_path, ["Systems side by side", "Learning vs forgetting",
                                                               "Second stages", "Per task", "Costs"],
                            {"plot-systems", "plot-trade-off"})
    systems_rows = text.split('id="systems-table"')[1].split("</table>")[0]
    assert all(label in systems_rows for label in ("base model (no tuning)", "LoRA, sentiment only",
                                                   "LoRA, sentiment + QA mixture", "full fine-tuning, sentiment only",
                                                   "sentiment then QA"))
    for run in ("lora-sentiment", "lora-mixture", "full-sentiment", "lora-then-qa", "full-then-qa"):
        assert f'href="{run}/report.html"' in systems_rows and (folder / run / "report.html").exists()
    # One number, whichever command computed it: the report's paired QA change is the forgetting report's.
    compared = json.loads((folder / "compare.json").read_text())
    for point in compared["trade_off"]:
        vs_base = results["systems"][point["system"]]["vs_base"]
        assert point["others"][0]["diff"] == vs_base["qa"]["diff"] and point["others"][0]["ci"] == vs_base["qa"]["ci"]
        assert point["gain"]["diff"] == vs_base["sentiment"]["diff"]
    # The report's second stages are the demo's own paired changes against the first stage.
    assert [(c["system"], c["after"]) for c in compared["continued"]] == [("lora-then-qa", "lora-sentiment"),
                                                                         ("full-then-qa", "full-sentiment")]
    for c in compared["continued"]:
        previous = results["systems"][c["system"]]["vs_previous"]
        assert {t["task"]: (t["diff"], t["ci"], t["p_value"]) for t in c["tests"]} == \
            {task: (d["diff"], d["ci"], d["p_value"]) for task, d in previous.items()}
    # `tunelab compare` reads the demo folder (its six systems), and its own output folder again. The
    # tuned task is guessed from what the runs trained: a second stage trained QA after sentiment.
    assert main(["compare", str(folder), "--output", str(tmp_path / "cmp")]) == 0
    again = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert again["runs"] == compared["runs"] and again["trade_off"] == compared["trade_off"]
    assert again["tuned_task"] == "sentiment"
    held_out = {p["system"]: p["others"][0]["held_out"] for p in again["trade_off"]}
    assert held_out == {"lora-sentiment": True, "lora-mixture": False, "full-sentiment": True, "lora-then-qa": False,
                        "full-then-qa": False}  # trained on QA: its QA change is not forgetting
    assert main(["compare", str(tmp_path / "cmp"), str(folder / "lora-sentiment"), "--output", str(tmp_path / "cmp2")]) == 0
    names = json.loads((tmp_path / "cmp2" / "compare.json").read_text())["runs"]
    assert len(names) == 7 and names[-1].endswith("/lora-sentiment")  # a name that is there twice says its folder
    assert 'id="plot-trade-off"' in (tmp_path / "cmp" / "report.html").read_text().replace("'", '"')
    assert "cost on held-out QA: " in (folder / "results.md").read_text() and "cost on held-out QA: " in out
    assert [p["name"] for p in results["phases"]][:2] == ["setup: resolve model", "1. evaluate the base model"]
    # The report's path is the last thing printed.
    assert out.strip().splitlines()[-1].endswith("report.html")


def test_the_readings_name_only_changes_whose_paired_ci_excludes_zero():
    from tunelab.experiments.demo_results import qa_cost_reading, second_task_reading

    def system(label, trained_on, diff, ci, previous=None):
        s = {"label": label, "trained_on": trained_on, "vs_base": {"qa": {"diff": diff, "ci": ci}}}
        if previous:
            s.update(after_label="full fine-tuning, sentiment only",
                     vs_previous={"sentiment": {"diff": previous[0], "ci": previous[1], "p_value": previous[2]}})
        return s

    results = {"systems": {"base": {"label": "base model (no tuning)", "trained_on": []},
                           "lora-sentiment": system("LoRA, sentiment only", ["sentiment"], -0.027, [-0.12, 0.07]),
                           "lora-mixture": system("LoRA, sentiment + QA mixture", ["sentiment", "qa"], -0.30, [-0.4, -0.2]),
                           "full-sentiment": system("full fine-tuning, sentiment only", ["sentiment"], -0.15, [-0.25, -0.05]),
                           "full-then-qa": system("full fine-tuning, sentiment then QA", ["qa"], -0.2, [-0.3, -0.1],
                                                  previous=(-0.1, [-0.18, -0.03], 0.03))}}
    reading = qa_cost_reading(results)
    # Systems that trained on QA questions (the mixture, a QA second stage): not forgetting, whatever the sign.
    assert "mixture" not in reading and "then QA" not in reading
    assert reading.startswith("cost on held-out QA: full fine-tuning, sentiment only -15.0 points [-25.0, -5.0]")
    assert "no detectable change for LoRA, sentiment only -2.7 points [-12.0, +7.0]" in reading
    assert second_task_reading(results) == ("cost of a second task on sentiment accuracy: full fine-tuning, sentiment "
                                            "then QA: lost -10.0 points [-18.0, -3.0] (p = 0.03) vs full fine-tuning, "
                                            "sentiment only")
    results["systems"]["full-sentiment"] = system("full fine-tuning, sentiment only", ["sentiment"], 0.08, [-0.02, 0.18])
    assert qa_cost_reading(results).startswith("cost on held-out QA: none detectable at these settings")
    results["systems"]["full-then-qa"]["vs_previous"]["sentiment"]["ci"] = [-0.2, 0.01]
    assert ": no detectable change: -10.0 points" in second_task_reading(results)


def test_a_null_reading_says_what_the_test_could_have_seen():
    """Rows shaped like forgetting.json's and compare.json's tests (with n and mde)."""
    from tunelab.experiments.demo_results import qa_cost_reading, ranking_reading, second_task_reading

    qa = {"metric": "token_f1", "diff": -0.016, "ci": [-0.119, 0.084], "p_value": 0.75, "n": 60, "mde": 0.142}
    previous = {"metric": "accuracy", "diff": -0.027, "ci": [-0.062, 0.0], "p_value": 0.104, "n": 112, "mde": None}
    results = {"seed": 0, "training_seeds": [0], "systems": {
        "base": {"label": "base model (no tuning)", "trained_on": []},
        "lora-sentiment": {"label": "LoRA, sentiment only", "trained_on": ["sentiment"], "vs_base": {"qa": qa}},
        "full-sentiment": {"label": "full fine-tuning, sentiment only", "trained_on": ["sentiment"],
                           "vs_base": {"qa": {**qa, "diff": 0.044, "ci": [-0.071, 0.159], "p_value": 0.46}}},
        "lora-then-qa": {"label": "LoRA, sentiment then QA", "trained_on": ["qa"], "vs_base": {"qa": qa},
                         "after_label": "LoRA, sentiment only", "vs_previous": {"sentiment": previous}},
        "full-then-qa": {"label": "full fine-tuning, sentiment then QA", "trained_on": ["qa"], "vs_base": {"qa": qa},
                         "after_label": "full fine-tuning, sentiment only",
                         "vs_previous": {"sentiment": {**previous, "diff": -0.045, "ci": [-0.089, -0.01],
                                                       "p_value": 0.03, "mde": 0.06}}}}}
    assert ("LoRA, sentiment only -1.6 points [-11.9, +8.4] (p = 0.75; n = 60, this test could see changes of "
            "≥ 14.2 points); full fine-tuning, sentiment only +4.4 points") in qa_cost_reading(results)
    # mde None (not computable): n alone; a detected change needs no detectable-effect clause.
    assert second_task_reading(results) == (
        "cost of a second task on sentiment accuracy: LoRA, sentiment then QA: no detectable change: -2.7 points "
        "[-6.2, +0.0] (p = 0.104; n = 112) vs LoRA, sentiment only; full fine-tuning, sentiment then QA: lost "
        "-4.5 points [-8.9, -1.0] (p = 0.03) vs full fine-tuning, sentiment only")
    assert ranking_reading(results) == (
        "LoRA vs full fine-tuning: QA token F1 change vs base: LoRA -1.6, full fine-tuning +4.4 points; sentiment "
        "accuracy change in the second stage: LoRA -2.7, full fine-tuning -4.5 points (one training seed: this "
        "ranking may not hold for another seed; --seeds 3 trains each over three)")
    # Over three training seeds: each comparison says whether it held in every seed, from each seed's
    # own paired difference, and the ranking is stated only as far as the seeds agree.
    by_seed = {}
    for s, (lora, full) in enumerate([(-0.02, 0.04), (0.01, 0.03), (-0.03, 0.05)]):
        systems = json.loads(json.dumps(results["systems"]))
        systems["lora-sentiment"]["vs_base"]["qa"]["diff"] = lora
        systems["full-sentiment"]["vs_base"]["qa"]["diff"] = full
        systems["full-then-qa"]["vs_previous"]["sentiment"]["diff"] = [-0.05, 0.01, -0.04][s]
        by_seed[str(s)] = systems
    results.update(training_seeds=[0, 1, 2], by_seed=by_seed)
    results["systems"]["lora-sentiment"]["vs_base"]["qa"]["holds_in_every_seed"] = False
    assert ("LoRA, sentiment only -1.6 points [-11.9, +8.4] (p = 0.75; n = 60, this test could see changes of "
            "≥ 14.2 points; does not hold in every seed (3 seeds: -2.0, +1.0, -3.0))") in qa_cost_reading(results)
    assert ranking_reading(results) == (
        "LoRA vs full fine-tuning over 3 training seeds: QA token F1 change vs base: full fine-tuning higher in "
        "every seed (LoRA -2.0, +1.0, -3.0; full fine-tuning +4.0, +3.0, +5.0); sentiment accuracy change in the "
        "second stage: no order holds in every seed: LoRA higher in 2, full fine-tuning in 1 of 3 (LoRA -2.7, "
        "-2.7, -2.7; full "
        "fine-tuning -5.0, +1.0, -4.0)")


def test_quick_demo_over_two_training_seeds(tiny_model_dir, tmp_path, capsys):
    from tunelab.cli.main import main

    assert main(["demo", "--quick", "--seeds", "2", "--no-full", "--output", str(tmp_path),
                 "--model", tiny_model_dir]) == 0
    out = capsys.readouterr().out
    (folder,) = list(tmp_path.glob("demo-seed0-*"))
    results = json.loads((folder / "results.json").read_text())
    assert results["training_seeds"] == [0, 1] and set(results["by_seed"]) == {"0", "1"}
    for name in ("lora-sentiment", "lora-mixture", "lora-then-qa"):
        seeds = json.loads((folder / name / "seeds.json").read_text())
        assert seeds == {"seeds": [0, 1], "runs": ["seed-0", "seed-1"]}
        for s in (0, 1):
            run = folder / name / f"seed-{s}"
            assert json.loads((run / "env.json").read_text())["seed"] == s
            assert (run / "forgetting" / "forgetting.json").exists()
        system = results["systems"][name]
        assert system["seed_runs"] == [str(folder / name / "seed-0"), str(folder / name / "seed-1")]
        assert len(system["vs_base"]["qa"]["per_seed_diffs"]) == 2
    # The second stage of each seed starts from the same seed's first stage.
    for s in (0, 1):
        cfg = (folder / "lora-then-qa" / f"seed-{s}" / "config.resolved.yaml").read_text()
        assert f"name: {folder / 'lora-sentiment' / f'seed-{s}' / 'merged'}" in cfg
    assert results["systems"]["lora-then-qa"]["vs_previous"]["sentiment"]["metric"] == "accuracy"
    compared = json.loads((folder / "compare.json").read_text())
    assert len(compared["runs"]) == 4  # the base model and three systems, each over its two seeds
    assert "LoRA vs full fine-tuning" not in out  # --no-full: nothing to rank
    assert "# tunelab demo (seed 0, means over training seeds 0, 1)" in (folder / "results.md").read_text()
    assert out.strip().splitlines()[-1].endswith("report.html")
