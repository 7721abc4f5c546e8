"""An SFT system and a DPO system in one comparison (#24): a tiny random Llama LoRA-tuned for 3 steps
by SFT on Alpaca instructions and for 3 by DPO on short preference pairs, each with a `forgetting:`
section scoring the same three tasks (both tuned tasks and one held-out T0 task), then `tunelab
compare base sft dpo --output DIR` as a user runs it.

compare.json must hold both systems: each one's gain on its own tuned task (the SFT task's token
NLL, lower is better, as an improvement; reward_accuracy for DPO) and its change on the held-out
task, every paired test with a CI and a p that agree (the CI excludes 0 exactly when p < 0.05), and
the same numbers as each run's own forgetting report. The page (report.html, in Chromium) draws
every one of them at compare.json's values; the trade-off plot and table put both systems on one
gain-vs-forgetting plot, each against its own tuned task (one panel per tuned task, a shared x)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from browser_check import render_and_check
from json_check import check_systems_figures, check_systems_tables
from page_check import read_page

from tunelab.cli.main import main
from tunelab.config import load_config
from tunelab.report import write_report
from tunelab.train import train

SPLIT = {"train": 0.5, "validation": 0.0, "test": 0.5}  # the same split and seed in both runs: the same test examples
GOOD = "good great lovely fine superb charming".split()
BAD = "bad awful terrible boring dull weak".split()
TUNED = {"sft": ("instr", "token_nll"), "dpo": ("prefs", "reward_accuracy")}  # system: (its tuned task, primary)
HELD_OUT = "heldout"


def tasks(root, shared_data) -> dict:
    """instr: Alpaca, scored as the perplexity of its answers (a random model's generations would all
    score 0); prefs: 40 short pairs (the shared DPO demo's answers are hundreds of tokens, slow on CPU),
    as tests/evaluate/test_preference_eval.py writes them; heldout: a T0 task neither run trains on."""
    prefs = root / "prefs.jsonl"
    prefs.write_text("".join(json.dumps({"prompt": f"Review number {i}: how was the film?",
                                         "chosen": f"It was {GOOD[i % 6]}" + " indeed" * (i % 3),
                                         "rejected": f"It was {BAD[(i * 5) % 6]}" + " really" * ((i + 1) % 3)}) + "\n"
                             for i in range(40)))
    t0 = shared_data / "t0_multitask_mix" / "rotten_tomatoes_Movie_Expressed_Sentiment.jsonl"
    return {"instr": {"name": "instr", "kind": "instruction", "eval_kind": "perplexity",
                      "source": str(shared_data / "instructions" / "llamafactory_alpaca_en_demo.json")},
            "prefs": {"name": "prefs", "kind": "preference", "source": str(prefs)},
            HELD_OUT: f"t0={t0},name={HELD_OUT},eval_kind=perplexity"}


def config(root, model_dir, system: str, specs: dict) -> dict:
    own = TUNED[system][0]
    other = next(t for s, (t, _) in TUNED.items() if s != system)
    train_cfg = {"method": "lora", "lr": 1e-2, "scheduler": "constant", "max_steps": 3, "batch_size": 2,
                 "grad_accum": 1, "precision": "fp32", "progress": "off", "lora": {"r": 4}}
    if system == "dpo":
        train_cfg.update(objective="dpo", preference={"beta": 0.5})
    return {"name": system, "seed": 5, "output_dir": str(root / "runs"), "model": {"name": model_dir},
            "data": {"max_length": 96, "cache": False, "split": SPLIT, "tasks": [specs[own]]},
            "train": train_cfg,
            # every task as the same mapping in both runs: by name, a run's own task is built with its
            # data.max_length (the instr split kept 235 of 499 test examples), as a mapping without it,
            # so the two runs would score different first-16 examples and compare would pair only 7
            "forgetting": {"tasks": [specs[own], specs[other], specs[HELD_OUT]], "tuned_task": own, "split": "test",
                           "limit": 16, "bootstrap_resamples": 200}}


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_model_dir, shared_data):
    """(compare output folder, {system: run folder}): both runs trained, then `tunelab compare`."""
    root = tmp_path_factory.mktemp("sft-dpo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNELAB_HOME", str(root / "home"))
        specs = tasks(root, shared_data)
        runs = {s: train(load_config(data=config(root, tiny_model_dir, s, specs))) for s in TUNED}
        out = root / "cmp"
        # the reference: the base model as the SFT run scored it (the DPO run scored the same examples)
        assert main(["compare", str(runs["sft"] / "forgetting" / "base"), str(runs["sft"]), str(runs["dpo"]),
                     "--output", str(out)]) == 0
    return out, runs


def consistent(test: dict) -> None:
    """A paired test's CI excludes 0 exactly when its p is below 0.05, and holds its difference."""
    lo, hi = test["ci"]
    assert lo <= test["diff"] <= hi, test
    assert (lo > 0 or hi < 0) == (test["p_value"] < 0.05), test


def test_compare_scores_both_systems_on_both_tuned_tasks(compared, tmp_path):
    out, runs = compared
    cmp = json.loads((out / "compare.json").read_text())
    assert cmp["labels"] == ["base", "sft", "dpo"]
    primary = {r["task"]: r for r in cmp["rows"] if r["primary"]}
    assert set(primary) == {"instr", "prefs", HELD_OUT}
    assert primary["instr"]["metric"] == "token_nll" and primary["prefs"]["metric"] == "reward_accuracy"
    for row in cmp["rows"]:
        assert row["tests"][0] is None and all(t is not None for t in row["tests"][1:])
        for t in row["tests"][1:]:
            consistent(t)
    assert primary["prefs"]["tests"][2]["test"] == "exact McNemar"

    # each system's gain and held-out change are its own forgetting report's numbers: the same base
    # model on the same examples (the DPO run's base scores equal the reference's)
    for i, system in enumerate(["sft", "dpo"], start=1):
        forgetting = {r["task"]: r for r in json.loads((runs[system] / "forgetting" / "forgetting.json")
                                                       .read_text())["tasks"]}
        for task in (TUNED[system][0], HELD_OUT):
            test, own = primary[task]["tests"][i], forgetting[task]
            assert own["metric"] == primary[task]["metric"] and own["n"] == test["n"] == 16
            assert test["diff"] == pytest.approx(own["diff"], abs=1e-9)
            # CIs and p: compare resamples 1000 times (the CLI passes no --bootstrap to compare_runs
            # without --task), the forgetting: section 200, so only the sign of the evidence must agree
            assert (test["p_value"] < 0.05) == (own["p_value"] < 0.05)
            assert primary[task]["values"][i]["value"] == pytest.approx(own["tuned"]["value"])
            assert primary[task]["values"][0]["value"] == pytest.approx(own["base"]["value"])
    assert primary["instr"]["tests"][1]["diff"] < 0  # SFT lowered its own task's NLL: a gain
    assert primary["prefs"]["tests"][2]["diff"] >= 0 and primary["prefs"]["values"][2]["value"] > 0.5

    # the page: every value, difference and CI of compare.json in the tables and the bar figures
    html_path, _ = write_report(out)
    page = read_page(html_path, tmp_path)
    rows = len(cmp["rows"])
    extra = sum(len(p["others"]) or 1 for p in cmp.get("trade_off") or [])
    assert check_systems_tables(page, cmp) == rows * 3 + extra
    assert check_systems_figures(page, cmp) >= rows * 3 + rows * 2


def test_trade_off_puts_sft_and_dpo_on_one_plot(compared, tmp_path):
    out, runs = compared
    cmp = json.loads((out / "compare.json").read_text())
    assert cmp.get("trade_off"), f"no trade-off in compare.json (tuned_task: {cmp.get('tuned_task')})"
    primary = {r["task"]: r for r in cmp["rows"] if r["primary"]}
    points = {p["system"]: p for p in cmp["trade_off"]}
    assert list(points) == ["sft", "dpo"]
    for i, system in enumerate(["sft", "dpo"], start=1):
        point, (own, metric) = points[system], TUNED[system]
        # its gain is on its own tuned task (per point, or the table's one tuned task)
        assert point.get("tuned_task", cmp.get("tuned_task")) == own
        test = primary[own]["tests"][i]
        sign = -1 if metric == "token_nll" else 1  # lower is better: the improvement is minus the difference
        assert point["gain"]["metric"] == metric
        assert point["gain"]["diff"] == pytest.approx(sign * test["diff"])
        assert sorted(point["gain"]["ci"]) == pytest.approx(sorted(sign * np.array(test["ci"])))
        assert point["gain"]["p_value"] == pytest.approx(test["p_value"])
        consistent(point["gain"])
        others = {o["task"]: o for o in point["others"]}
        assert others[HELD_OUT]["held_out"] and own not in others
        assert others[HELD_OUT]["diff"] == pytest.approx(-primary[HELD_OUT]["tests"][i]["diff"])  # token_nll
        for o in others.values():
            consistent(o)
        # the x of both points: the task that is neither system's tuned task, in its own units (one
        # loss is its own measure; losses are never averaged), the same task for both points
        assert point["change_tasks"] == [HELD_OUT] and point["change_unit"] == "token_nll"
        assert point["change"] == pytest.approx(others[HELD_OUT]["diff"])
    assert "tuned_task" not in cmp  # no one tuned task for the table: each point has its own
    md = (out / "compare.md").read_text()
    assert "| sft | instr |" in md and "| dpo | prefs |" in md

    html_path, _ = write_report(out)
    render_and_check(html_path, tmp_path, ["Systems side by side", "Learning vs forgetting"],
                     {"plot-systems", "plot-systems-diffs", "plot-trade-off"})
    page = read_page(html_path, tmp_path)
    rows = len(cmp["rows"])
    assert check_systems_tables(page, cmp) == rows * 3 + sum(len(p["others"]) for p in cmp["trade_off"])
    # both systems' points and gain CIs on the one gain-vs-forgetting plot, at compare.json's values
    assert check_systems_figures(page, cmp) >= rows * 3 + rows * 2 + 2
    assert {f"point/trade_off/{i}" for i in range(2)} <= set(page["marks"])
    # a gain in NLL and a gain in reward accuracy never share a y axis: one panel per tuned task
    assert {page["marks"][f"point/trade_off/{i}"]["axes"] for i in range(2)} == \
        {"axes/trade_off/gain/instr", "axes/trade_off/gain/prefs"}


def test_tuned_task_per_system_from_the_command_line(compared, tmp_path):
    """--tuned-task SYSTEM=TASK names each system's tuned task; a name that is no system, or the
    reference, is one clear line and exit 2, not a traceback."""
    out, runs = compared
    base = str(runs["sft"] / "forgetting" / "base")
    again = tmp_path / "again"
    assert main(["compare", base, str(runs["sft"]), str(runs["dpo"]), "--output", str(again),
                 "--tuned-task", "sft=heldout", "--tuned-task", "dpo=prefs"]) == 0
    points = {p["system"]: p for p in json.loads((again / "compare.json").read_text())["trade_off"]}
    assert points["sft"]["tuned_task"] == HELD_OUT and points["dpo"]["tuned_task"] == "prefs"
    assert points["sft"]["change_tasks"] == ["instr"] == points["dpo"]["change_tasks"]
    for bad in (["--tuned-task", "rlhf=prefs"], ["--tuned-task", "base=instr"]):
        assert main(["compare", base, str(runs["sft"]), str(runs["dpo"]), *bad]) == 2
