"""`tunelab data preview`: the shared four-task mixture (counts, T5 temperature rates, SmolLM2
chat template) and the built-in demo config, through the CLI and the API."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tunelab.config import load_config
from tunelab.data import prepare
from tunelab.data.preview import TRAINED_END, TRAINED_START, length_stats, preview_summary

ROOT = Path(__file__).resolve().parents[2]


def _temperature_rates(train_sizes: dict, cap: int, t: float) -> dict:
    weights = {k: min(n, cap) ** (1 / t) for k, n in train_sizes.items()}
    return {k: w / sum(weights.values()) for k, w in weights.items()}


def test_cli_preview_on_shared_mix(shared_data, tmp_path):
    out = tmp_path / "preview.json"
    proc = subprocess.run([sys.executable, "-m", "tunelab.cli", "data", "preview", "examples/shared_mix.yaml",
                           "--n", "2", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "TUNELAB_DEBUG": ""})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.read_text())
    tasks = summary["tasks"]
    assert tasks["sst2"]["counts"]["read"] == 872
    assert tasks["sst2"]["split_sizes"] == {"train": 698, "validation": 87, "test": 87}
    assert tasks["dialogsum"]["counts"]["read"] == 1000
    assert tasks["dialogsum"]["split_sizes"] == {"train": 444, "validation": 56, "test": 500}
    for name in ("t0_ag_news", "t0_commonsense_qa"):
        assert tasks[name]["split_sizes"] == {"train": 160, "validation": 20, "test": 20}
    for t in tasks.values():
        c = t["counts"]
        assert c["read"] == c["kept"] + c["rejected"] + c["skipped"] + c["duplicates_removed"]
    expected = _temperature_rates({k: t["split_sizes"]["train"] for k, t in tasks.items()}, cap=500, t=2.0)
    for name, rate in expected.items():
        assert abs(tasks[name]["mixture_rate"] - rate) < 1e-12
        assert f"{rate:.4f}" in proc.stdout
    assert summary["mixture"]["strategy"] == "temperature"
    assert len(summary["examples"]) == 8
    for ex in summary["examples"]:
        assert ex["prompt"].startswith("<|im_start|>system\n") and ex["prompt"].endswith("<|im_start|>assistant\n")
        assert ex["trained"].endswith("<|im_end|>") and "<|endoftext|>" not in ex["trained"]
    # not a terminal: plain markers around the trained part
    assert f"<|im_start|>assistant\n{TRAINED_START}" in proc.stdout and f"<|im_end|>{TRAINED_END}" in proc.stdout
    assert "Leak check: dialogsum train/test" in proc.stdout


def test_preview_summary_of_shared_mix_in_process(shared_data, tokenizer):
    cfg = load_config(ROOT / "examples/shared_mix.yaml", ["data.mixture.strategy=proportional"])
    data = prepare(cfg, tokenizer)
    summary = preview_summary(data, tokenizer, split="test", n=1)
    sizes = {"sst2": 698, "dialogsum": 444, "t0_ag_news": 160, "t0_commonsense_qa": 160}
    capped = {k: min(n, 500) for k, n in sizes.items()}
    for name, n in capped.items():
        assert abs(summary["tasks"][name]["mixture_rate"] - n / sum(capped.values())) < 1e-12
    dialog = [ex for ex in summary["examples"] if ex["task"] == "dialogsum"][0]
    assert len(dialog["references"]) == 3
    tokens = summary["tasks"]["dialogsum"]["tokens"]["input"]
    assert tokens["n"] == 1000 and tokens["max"] <= 512 and tokens["min"] <= tokens["p50"] <= tokens["p95"]
    assert summary["tasks"]["dialogsum"]["counts"]["truncated"] > 0


def test_length_stats():
    assert length_stats([1, 2, 3, 4, 100]) == {"n": 5, "min": 1, "mean": 22.0, "p50": 3, "p95": 80.8, "max": 100}
    assert length_stats([])["max"] is None


def test_cli_preview_builtin_demo_config():
    proc = subprocess.run([sys.executable, "-m", "tunelab.cli", "data", "preview", "examples/preview.yaml",
                           "--n", "1", "--split", "test", "data.max_length=64", "--plain"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "reviews" in proc.stdout and "multiple_choice" in proc.stdout
    assert "max_length 64" in proc.stdout and "prompt truncated" in proc.stdout
    assert proc.stdout.count(f"<|im_start|>assistant\n{TRAINED_START}") == 4


def test_terminal_mode_dims_the_prompt_and_highlights_the_answer():
    from rich.console import Console

    from tunelab.data.preview import print_preview

    summary = {"tasks": {}, "mixture": {"strategy": "concat", "epoch_size": 0}, "skipped": [], "rejected": [],
               "examples": [{"task": "t", "split": "train", "source": "f:1", "prompt": "Q?\n", "trained": "A<|im_end|>",
                             "pieces": [["Q?\n", False], ["A<|im_end|>", True]],
                             "prompt_tokens": 3, "trained_tokens": 2, "truncated": False, "references": ["A"]}]}
    console = Console(force_terminal=True, color_system="standard", width=100, record=True)
    print_preview(summary, console)
    ansi = console.export_text(styles=True)
    assert "\x1b[2mQ?\x1b[0m" in ansi  # dim prompt
    assert "\x1b[1;30;42mA<|im_end|>\x1b[0m" in ansi  # bold black on green, not dimmed
    assert TRAINED_START not in ansi
