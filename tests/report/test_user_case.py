"""The user's case, rebuilt on real data: a tiny Llama tuned a few steps on SAMSum summaries (T0's
prompt/completion file, scored with BLEU on its 0-100 scale), with AG News (accuracy of extracted
labels, 0-1) and common_gen's reference sentences (token NLL, a loss) held out. Its report.html
used to draw the forgetting bars without CIs, put every per-example score as "n/a" and squeeze
the 0-1 bars next to BLEU's; here Chromium reads the page back against forgetting.json."""

from __future__ import annotations

import json

import pytest
from browser_check import render_and_check
from json_check import check_examples_table, check_forgetting_page, check_metrics
from page_check import read_page


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)  # shared 2-core machine: extra threads only spin


def samsum_config(t0, model_dir: str, runs) -> dict:
    ag_news = {"name": "ag_news", "kind": "classification", "source": str(t0 / "ag_news_classify_with_choices.jsonl"),
               "fields": {"text": "prompt", "label": "completion"}, "max_new_tokens": 6,
               # the completions end with T0's literal end marker: the label words are what comes before it
               "labels": {"Business<|endoftext|>": "Business",
                          "Science and technology<|endoftext|>": "Science and technology"}}
    common_gen = {"name": "common_gen", "kind": "completion", "eval_kind": "perplexity",
                  "source": str(t0 / "common_gen_Given_concepts_type_1.jsonl"), "strip_suffix": ["<|endoftext|>"]}
    samsum = {"name": "samsum", "kind": "completion", "source": str(t0 / "samsum_Summarize_this_dialogue_.jsonl"),
              "fields": {"prompt": "prompt", "completion": "completion"}, "strip_suffix": ["<|endoftext|>"],
              "metrics": ["bleu"], "max_new_tokens": 12, "limit": 120,
              "ratios": {"train": 0.7, "validation": 0.0, "test": 0.3}}
    return {"name": "samsum-full", "seed": 0, "output_dir": str(runs), "model": {"name": model_dir},
            "data": {"tasks": [samsum]},
            # a few steps at a high rate: enough for the random model to start writing the summaries'
            # punctuation, so BLEU moves (its CI is not [0, 0])
            "train": {"method": "full", "lr": 3e-3, "max_steps": 12, "batch_size": 8, "precision": "fp32",
                      "progress": "off"},
            "forgetting": {"tasks": ["samsum", ag_news, common_gen], "tuned_task": "samsum", "limit": 16,
                           "bootstrap_resamples": 200}}


def test_tuned_run_report_shows_its_forgetting_json(shared_data, tiny_model_dir, tmp_path, capsys):
    from tunelab.cli.main import main
    from tunelab.config import load_config
    from tunelab.train import train

    run = train(load_config(data=samsum_config(shared_data / "t0_multitask_mix", tiny_model_dir, tmp_path / "runs")))
    assert main(["report", str(run)]) == 0
    capsys.readouterr()
    html_path = run / "report.html"
    render_and_check(html_path, tmp_path, ["Loss curves", "Metrics", "Forgetting: base vs tuned",
                                           "Example predictions before vs after"],
                     {"plot-loss", "plot-metrics", "plot-forgetting", "plot-forgetting-scores"})
    forgetting = json.loads((run / "forgetting" / "forgetting.json").read_text())
    assert [r["task"] for r in forgetting["tasks"]] == ["samsum", "ag_news", "common_gen"]
    page = read_page(html_path, tmp_path)

    # every number in the tables is the JSON's; every CI drawn at its bounds, on its bar
    assert check_forgetting_page(page, forgetting) == 3 * 3
    assert check_examples_table(page, forgetting, run / "forgetting") == 3 * 3  # the scores are numbers, not n/a
    tuned = json.loads((run / "forgetting" / "tuned" / "results.json").read_text())
    assert check_metrics(page, tuned) >= 5  # bleu; accuracy, macro_f1; token_nll, perplexity, bits_per_byte

    # the forgetting bars have error bars: a CI wider than 0 is a visible whisker
    for r in forgetting["tasks"]:
        whisker = page["marks"][f"ci/forgetting/{r['task']}"]
        if r["ci"][1] - r["ci"][0] > 0:
            assert whisker["right"] - whisker["left"] > 5, (r["task"], whisker)
    assert forgetting["tasks"][0]["ci"][1] > forgetting["tasks"][0]["ci"][0]  # BLEU moved: its whisker is checked
    # BLEU (0-100), accuracy (0-1) and the loss never share an axis
    panels = {page["marks"][f"ci/forgetting/{r['task']}"]["axes"] for r in forgetting["tasks"]}
    assert panels == {"axes/forgetting/0-100", "axes/forgetting/0-1", "axes/forgetting/token_nll"}
    metric_panels = {m["axes"] for gid, m in page["marks"].items() if gid.startswith("ci/metrics/")}
    assert {"axes/metrics/0-1", "axes/metrics/0-100", "axes/metrics/token_nll"} <= metric_panels
    # the test behind each p is named: exact McNemar for AG News' 0/1 scores
    header, *rows = page["tables"]["forgetting-table"]
    assert "(exact McNemar)" in dict(zip(header, rows[1]))["test, p"]
