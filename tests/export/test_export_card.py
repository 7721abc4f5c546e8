"""The model card (README.md) in every export folder: base model, data, method, the run's numbers, usage."""

from __future__ import annotations

import json

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
