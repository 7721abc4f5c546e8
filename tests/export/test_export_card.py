"""The model card (README.md) in every export folder: base model, data, method, the run's numbers, usage."""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config import load_config
from tunelab.train import train
from train_helpers import toy_config


def test_card_of_a_run_with_evaluation_and_forgetting(tmp_path, tiny_model_dir):
    from tunelab.evaluate import evaluate
    from tunelab.export import export_run

    raw = toy_config(tmp_path, tiny_model_dir, name="carded", max_steps=2, lora={"r": 4, "alpha": 8})
    raw["forgetting"] = {"tasks": ["toy"], "tuned_task": "toy", "limit": 4, "bootstrap_resamples": 50,
                         "generation": {"max_new_tokens": 2}}
    run = train(load_config(data=raw))
    results = evaluate(None, ["toy"], run=str(run), output_dir=run / "eval", limit=5, n_resamples=50, cache=False)
    adapter = export_run(run)
    card = (adapter / "README.md").read_text()
    # base model, data (task, source, examples per split), method and hyperparameters
    assert f"- Base model: `{tiny_model_dir}`" in card
    counts = json.loads((run / "summary.json").read_text())["data_counts"]["tasks"]["toy"]["by_split"]
    kept = " | ".join(str(counts[s]["kept"]) for s in ("train", "validation", "test"))
    assert f"| toy | classification | 48 inline records | {kept} | 0 | 0 |" in card
    assert "| method | lora (r=4, alpha=8.0, dropout=0.0, target_modules=all-linear, bias=none" in card
    assert "| optimizer | adamw, lr 0.005" in card and "| batch | 8 per process x 1 accumulation x 1 process(es) |" in card
    # the run's evaluation: metric, value, CI, split, n -- as results.json has them
    acc = results["tasks"]["toy"]["metrics"]["accuracy"]
    assert (f"| toy | accuracy | {acc['value']:.4g} | [{acc['ci'][0]:.4g}, {acc['ci'][1]:.4g}] | "
            f"{results['tasks']['toy']['split']} | {acc['n']} |") in card
    forgetting = json.loads((run / "forgetting" / "forgetting.json").read_text())["tasks"][0]
    assert f"| toy | {forgetting['metric']} | {forgetting['base']['value']:.4g}" in card
    assert "| test | 4 |" in card  # split and n of the forgetting row
    # how to load it: an adapter needs peft
    assert "AutoPeftModelForCausalLM.from_pretrained" in card and "library_name: peft" in card
    merged = export_run(run, merge=True, dtype="bf16", checkpoint="last")
    card = (merged / "README.md").read_text()
    assert "merged model (bfloat16)" in card and "AutoModelForCausalLM.from_pretrained" in card
    assert "checkpoint `last`" in card  # the numbers are the final model's, and the card says so


def test_card_without_evaluation_names_the_alias_provenance(tmp_path, tiny_model_dir):
    from tunelab.models.resolver import ALIASES
    from tunelab.export import export_run
    from tunelab.export.model_card import card_text

    run = train(load_config(data=toy_config(tmp_path, tiny_model_dir, name="plain", method="full", max_steps=1)))
    card = (export_run(run) / "README.md").read_text()
    assert "holds no evaluation" in card and f"tunelab eval --run {run}" in card
    assert "merged model (float32)" in card  # a full fine-tune exports the whole model
    # The embedded alias: the card says its weights are a de-quantized Q4_1 GGUF.
    cfg = load_config(run / "config.resolved.yaml")
    cfg.model.name = "smollm2-135m-instruct"
    text = card_text(run, cfg, {"kind": "gguf", "checkpoint": "final", "gguf_type": "q8_0",
                                "gguf_file": "plain-Q8_0.gguf"})
    alias = ALIASES["smollm2-135m-instruct"]
    assert f"`{alias.gguf_file}` shipped by the `{alias.package}` Python package" in text
    assert "a Q4_1 GGUF de-quantized to float32" in text and "HuggingFaceTB/SmolLM2-135M-Instruct" in text
    assert "ollama create" in text and "llama-cli -m plain-Q8_0.gguf" in text


# ---- SFT cards stay as they were; preference runs say how they were trained ------------------

# the card before preference objectives existed, but for the forgetting table's test column (added
# after them: the heading had said paired-bootstrap for every row, McNemar's included)
GOLDEN = Path(__file__).with_name("sft_card.golden.md")


def write_sft_run(run: Path) -> None:
    """A run folder with just what the card reads (summary, evaluation, forgetting): fixed numbers,
    so the card is the same text on every machine."""
    summary = {"processes": 1, "steps": 2, "status": "completed", "precision": "fp32", "train_tokens": 1234,
               "trainable_params": 8192, "total_params": 3227968, "wall_s": 3.5,
               "best": {"value": 0.25, "metric": "val_loss"},
               "data_counts": {"tasks": {"toy": {"by_split": {"train": {"kept": 38}, "validation": {"kept": 5},
                                                               "test": {"kept": 5}}, "truncated": 0, "rejected": 0}},
                               "mixture": {"strategy": "concat", "epoch_size": 38}}}
    results = {"bootstrap": {"confidence": 0.95}, "model": {"label": "carded"},
               "tasks": {"toy": {"split": "test", "n": 5, "metrics": {
                   "accuracy": {"value": 0.6, "ci": [0.2, 1.0], "n": 5}, "macro_f1": {"value": 0.5833333333333334}}}}}
    forgetting = {"tuned_dir": "tuned", "tasks": [
        {"task": "toy", "metric": "accuracy", "base": {"value": 0.5, "ci": [0.0, 1.0]},
         "tuned": {"value": 0.75, "ci": [0.25, 1.0]}, "diff": 0.25, "ci": [-0.2, 0.6], "p_value": 1.0, "n": 4,
         "test": "exact McNemar"}]}
    (run / "eval").mkdir(parents=True)
    (run / "forgetting" / "tuned").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "eval" / "results.json").write_text(json.dumps(results))
    (run / "forgetting" / "forgetting.json").write_text(json.dumps(forgetting))
    (run / "forgetting" / "tuned" / "results.json").write_text(json.dumps({"tasks": {"toy": {"split": "test"}}}))


def test_sft_card_is_byte_identical_to_the_card_before_preference_objectives(tmp_path):
    from tunelab.export.model_card import card_text

    run = tmp_path / "runs" / "carded"
    write_sft_run(run)
    cfg = load_config(data=toy_config(tmp_path, "org/base-model", name="carded", max_steps=2,
                                      lora={"r": 4, "alpha": 8}))
    assert cfg.train.objective == "sft"
    assert card_text(run, cfg, {"kind": "adapter", "checkpoint": "final"}) == GOLDEN.read_text()


def test_card_of_a_dpo_run_names_the_objective_and_explains_preference_scores(tmp_path, tiny_model_dir, shared_data):
    from tunelab.evaluate import evaluate
    from tunelab.export import export_run
    from tunelab.export.model_card import card_text
    from test_preference_train import preference_config

    raw = preference_config(tmp_path, tiny_model_dir, shared_data, "dpo", max_steps=2, checkpoint_every=None,
                            preference={"beta": 0.5})
    raw["data"]["max_length"] = 160  # enough pairs that fit for a test split
    raw["data"]["tasks"][0]["limit"] = 60
    raw["forgetting"] = {"tasks": ["prefs"], "tuned_task": "prefs", "limit": 4, "bootstrap_resamples": 50}
    run = train(load_config(data=raw))
    results = evaluate(None, ["prefs"], run=str(run), output_dir=run / "eval", limit=5, n_resamples=50, cache=False)
    card = (export_run(run) / "README.md").read_text()
    assert "tags: [tunelab, lora, dpo]" in card
    assert "# dpo: lora DPO preference tuning of " in card and "fine-tune of" not in card
    assert "Trained with DPO (`train.objective: dpo`) on preference pairs" in card
    assert "| objective | dpo (dpo_loss sigmoid, beta 0.5) |" in card
    assert "| reference | the base model with the adapter disabled |" in card
    assert "| batch | 2 pairs per process x 2 accumulation x 1 process(es) |" in card
    assert "| prefs | preference | " in card
    # the preference task's scores, as results.json has them, and what they measure
    metrics = results["tasks"]["prefs"]["metrics"]
    assert set(metrics) == {"reward_accuracy", "reward_margin"}
    for name, m in metrics.items():
        assert (f"| prefs | {name} | {m['value']:.4g} | [{m['ci'][0]:.4g}, {m['ci'][1]:.4g}] | "
                f"{results['tasks']['prefs']['split']} | {m['n']} |") in card
    assert "| prefs | reward_accuracy | " in card.split("forgetting/forgetting.json")[1]  # base vs tuned
    assert "reward_margin the mean of log P(chosen) - log P(rejected) in nats" in card
    assert "not DPO's implicit reward" in card

    # The other objectives: only the options each reads, beta as the run used it (its default
    # where unset), and the reference it had.
    cfg = load_config(run / "config.resolved.yaml")

    def rows(objective, method="lora", **options):
        cfg.train.objective, cfg.train.method = objective, method
        cfg.train.preference = type(cfg.train.preference)(**options)
        text = card_text(run, cfg, {"kind": "model", "checkpoint": "final", "dtype": "float32"})
        return [line for line in text.splitlines() if line.startswith(("tags:", "| objective", "| reference"))]

    assert rows("simpo", simpo_gamma=1.0) == ["tags: [tunelab, lora, simpo]",
                                              "| objective | simpo (beta 2, simpo_gamma 1) |",
                                              "| reference | none (the objective is reference-free) |"]
    assert rows("kto", desirable_weight=1.33)[1] == \
        "| objective | kto (beta 0.1, desirable_weight 1.33, undesirable_weight 1) |"
    assert rows("ipo")[1:] == ["| objective | ipo (beta 0.1) |",
                               "| reference | the base model with the adapter disabled |"]
    assert rows("orpo")[1] == "| objective | orpo (beta 0.1) |"
    assert rows("dpo", dpo_loss="robust", label_smoothing=0.1)[1] == \
        "| objective | dpo (dpo_loss robust, beta 0.1, label_smoothing 0.1) |"
    assert rows("dpo", method="full", dpo_loss="hinge")[1:] == [
        "| objective | dpo (dpo_loss hinge, beta 0.1) |",
        "| reference | the starting model's log-probs of every training pair, computed once before training |"]
