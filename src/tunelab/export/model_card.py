"""The model card (README.md) written into every export folder.

An exported folder travels without its run folder (to a colleague, a model hub, an Ollama host),
so the card carries what a reader needs to trust and use it: the base model (for the embedded
alias, that its weights are a de-quantized Q4_1 GGUF, not the original release), the training
data (tasks, sources, examples per split), the method and its hyperparameters, the training
objective when it is a preference objective (dpo, ipo, simpo, orpo, kto: the objective, the
options it reads, its reference; docs/preference.md), the run's own evaluation numbers when the
run has them (eval/results.json, forgetting/forgetting.json: metric, value, CI, split, n), and
how to load the folder. An SFT run's card says nothing of objectives: it is what it was before
preference objectives existed, byte for byte.

Everything is read from the run folder (config.resolved.yaml, summary.json and the result files);
nothing is re-computed, so the card says only what the run measured.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.files import write_text

ALIAS_NOTE = ("tunelab's embedded alias: the weights come from `{gguf}` shipped by the `{package}` Python package, "
              "a Q4_1 GGUF de-quantized to float32 on first use. They are not the original release's weights "
              "(quantization noise is baked in), and this model was fine-tuned from them.")


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _num(x) -> str:
    if x is None:
        return "n/a"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _ci(ci) -> str:
    return f"[{_num(ci[0])}, {_num(ci[1])}]" if ci else "n/a"


def base_model_lines(name: str) -> list[str]:
    from tunelab.models.resolver import ALIASES

    alias = ALIASES.get(name)
    if alias is None:
        return [f"- Base model: `{name}`"]
    return [f"- Base model: `{name}` ({alias.description})",
            "- " + ALIAS_NOTE.format(gguf=alias.gguf_file, package=alias.package)]


def _source_text(source) -> str:
    if source is None:
        return "-"
    if isinstance(source, list):
        return "; ".join(_source_text(s) for s in source)
    if source.records is not None:
        return f"{len(source.records)} inline records"
    if source.hub:
        return f"hub `{source.hub}`" + (f" ({source.config})" if source.config else "") + \
            (f" split {source.split}" if source.split else "")
    return f"`{source.path}`"


def data_lines(cfg, summary: dict) -> list[str]:
    counts = ((summary or {}).get("data_counts") or {}).get("tasks") or {}
    rows = ["| task | kind | source | train | validation | test | truncated | rejected |",
            "|---|---|---|---|---|---|---|---|"]
    for task in cfg.data.tasks:
        source = task.source if task.source is not None else \
            "; ".join(f"{split}: {_source_text(s)}" for split, s in (task.splits or {}).items())
        c = counts.get(task.name) or {}
        split = c.get("by_split") or {}
        kept = [_num((split.get(s) or {}).get("kept")) for s in ("train", "validation", "test")]
        rows.append(f"| {task.name} | {task.kind} | {source if isinstance(source, str) else _source_text(source)} | "
                    f"{' | '.join(kept)} | {_num(c.get('truncated'))} | {_num(c.get('rejected'))} |")
    mixture = ((summary or {}).get("data_counts") or {}).get("mixture") or {}
    lines = ["## Training data", "", *rows, "",
             f"Examples per split after filtering; max length {cfg.data.max_length} tokens "
             f"(over-length: {cfg.data.overlength}); mixture: {mixture.get('strategy', cfg.data.mixture.strategy)}"
             + (f", {mixture['epoch_size']} examples per epoch" if mixture.get("epoch_size") else "") + "."]
    if not counts:
        lines.append("The run folder has no data counts (summary.json missing): sizes are unknown.")
    return lines


def method_options(train) -> dict:
    """The options of the train: sections the method reads (qlora: train.lora, then train.qlora)."""
    from tunelab.models.tuners import get_method

    options = {}
    for section in get_method(train.method).options:
        options.update(getattr(train, section).model_dump())
    return options


# Display names of the preference objectives, and the train.preference keys each one reads
# (train/preference.py); label_smoothing only with dpo_loss robust.
OBJECTIVE_NAMES = {"dpo": "DPO", "ipo": "IPO", "simpo": "SimPO", "orpo": "ORPO", "kto": "KTO"}
OBJECTIVE_OPTIONS = {"dpo": ("dpo_loss", "beta", "label_smoothing"), "ipo": ("beta",),
                     "simpo": ("beta", "simpo_gamma"), "orpo": ("beta",),
                     "kto": ("beta", "desirable_weight", "undesirable_weight")}
OBJECTIVE_DATA = {"kto": "unpaired answers labelled desirable or undesirable"}


def _option(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def objective_text(t) -> str:
    """`dpo (dpo_loss sigmoid, beta 0.1)`: the objective and the train.preference options it reads
    (beta as the run used it: the objective's default where the config left it unset)."""
    from tunelab.train.preference import beta_of

    p = t.preference
    values = {"beta": beta_of(t.objective, p), "dpo_loss": p.dpo_loss, "simpo_gamma": p.simpo_gamma,
              "label_smoothing": p.label_smoothing if p.dpo_loss == "robust" else None,
              "desirable_weight": p.desirable_weight, "undesirable_weight": p.undesirable_weight}
    options = ", ".join(f"{k} {_option(values[k])}" for k in OBJECTIVE_OPTIONS[t.objective] if values[k] is not None)
    return f"{t.objective} ({options})"


def reference_text(t) -> str:
    """What the objective's reference model was (train/preference.py)."""
    from tunelab.models.tuners import get_method
    from tunelab.train.preference import REFERENCE_FREE

    if t.objective in REFERENCE_FREE:
        return "none (the objective is reference-free)"
    if get_method(t.method).peft:
        return "the base model with the adapter disabled"
    return "the starting model's log-probs of every training pair, computed once before training"


def objective_lines(cfg) -> list[str]:
    """The sentence under the title of a preference run's card: what it learned from."""
    t = cfg.train
    data = OBJECTIVE_DATA.get(t.objective, "preference pairs (a chosen and a rejected answer to one prompt)")
    return [f"Trained with {OBJECTIVE_NAMES[t.objective]} (`train.objective: {t.objective}`) on {data}; the "
            f"objective, its options and its reference are under Method and hyperparameters.", ""]


def training_lines(cfg, summary: dict) -> list[str]:
    t, s = cfg.train, summary or {}
    options = ", ".join(f"{k}={v}" for k, v in method_options(t).items() if v not in (None, [], {}))
    length = f"max_steps {t.max_steps}" if t.max_steps else f"{t.epochs} epoch(s)"
    preference = t.objective != "sft"
    items = ("examples " if t.objective == "kto" else "pairs ") if preference else ""
    rows = [
        ("method", t.method + (f" ({options})" if options else "")),
        *([("objective", objective_text(t)), ("reference", reference_text(t))] if preference else []),
        ("optimizer", f"{t.optimizer}, lr {t.lr:g}, weight decay {t.weight_decay:g}, {t.scheduler} schedule, "
                      + (f"warmup {t.warmup_steps} steps" if t.warmup_steps else f"warmup ratio {t.warmup_ratio:g}")),
        ("batch", f"{t.batch_size} {items}per process x {t.grad_accum} accumulation x "
                  f"{s.get('processes', 1)} process(es)"),
        ("length", f"{length}; steps done: {_num(s.get('steps'))}, status: {s.get('status', 'unknown')}"),
        ("precision", s.get("precision") or t.precision),
        ("seed", cfg.seed),
        ("training tokens", _num(s.get("train_tokens"))),
        ("trainable / total parameters", f"{_num(s.get('trainable_params'))} / {_num(s.get('total_params'))}"),
        ("wall time (s)", _num(s.get("wall_s"))),
        ("best validation", _num((s.get("best") or {}).get("value")) + f" {(s.get('best') or {}).get('metric', '')}"),
    ]
    return ["## Method and hyperparameters", "", "| | |", "|---|---|",
            *(f"| {k} | {v} |" for k, v in rows), "",
            "The whole resolved config is `config.resolved.yaml` in the run folder."]


PREFERENCE_METRICS = ("reward_accuracy", "reward_margin")
PREFERENCE_NOTE = ("reward_accuracy and reward_margin (a preference task, eval_kind preference) score each test pair "
                   "by the model's summed log-probability of the chosen and of the rejected answer after the shared "
                   "prompt: reward_accuracy is the share of pairs whose chosen answer is the more likely (0-1), "
                   "reward_margin the mean of log P(chosen) - log P(rejected) in nats. Both are reference-free: "
                   "not DPO's implicit reward (beta times the log-ratio to the reference), which training logs as "
                   "rewards/*; reward_accuracy's paired test is the exact McNemar test, reward_margin's the paired "
                   "bootstrap.")


def _preference_metrics(results, forgetting) -> bool:
    """Whether any evaluation row is a preference metric (the note on what they measure follows)."""
    names = {m for res in ((results or {}).get("tasks") or {}).values() for m in (res.get("metrics") or {})}
    names |= {row.get("metric") for row in (forgetting or {}).get("tasks") or []}
    return any(m in names for m in PREFERENCE_METRICS)


def evaluation_lines(run: Path, checkpoint: str = "final") -> list[str]:
    lines = ["## Evaluation (the run's own numbers)", ""]
    if checkpoint != "final":
        lines += [f"This export is checkpoint `{checkpoint}`; the numbers below belong to the model each file "
                  "names (usually the run's final model).", ""]
    results = _json(run / "eval" / "results.json")
    if results:
        level = f"{100 * (results.get('bootstrap') or {}).get('confidence', 0.95):g}%"
        lines += [f"`eval/results.json`, model evaluated: `{(results.get('model') or {}).get('label', '?')}`. "
                  "CI: bootstrap confidence interval (n/a where none was computed).", "",
                  f"| task | metric | value | {level} CI | split | n |", "|---|---|---|---|---|---|"]
        for task, res in (results.get("tasks") or {}).items():
            for metric, m in (res.get("metrics") or {}).items():
                lines.append(f"| {task} | {metric} | {_num(m.get('value'))} | {_ci(m.get('ci'))} | "
                             f"{res.get('split', '?')} | {_num(m.get('n', res.get('n')))} |")
        lines.append("")
    forgetting = _json(run / "forgetting" / "forgetting.json")
    if forgetting:
        tuned = _json(run / "forgetting" / (forgetting.get("tuned_dir") or "tuned") / "results.json") or {}
        splits = {name: t.get("split") for name, t in (tuned.get("tasks") or {}).items()}
        lines += ["`forgetting/forgetting.json`: base model vs this fine-tune on the same examples; "
                  "difference with the CI and p of the paired test its metric calls for (exact McNemar for "
                  "0/1 scores, the paired bootstrap otherwise).", "",
                  "| task | metric | base | tuned | difference [95% CI] | p | test | split | n |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in forgetting.get("tasks") or []:
            lines.append(f"| {row['task']} | {row['metric']} | {_num(row['base']['value'])} {_ci(row['base'].get('ci'))} "
                         f"| {_num(row['tuned']['value'])} {_ci(row['tuned'].get('ci'))} | {_num(row.get('diff'))} "
                         f"{_ci(row.get('ci'))} | {_num(row.get('p_value'))} | {row.get('test') or 'n/a'} | "
                         f"{splits.get(row['task'], '?')} | {_num(row.get('n'))} |")
        lines.append("")
    if _preference_metrics(results, forgetting):
        lines += [PREFERENCE_NOTE, ""]
    if not results and not forgetting:
        lines += ["The run folder holds no evaluation (no eval/results.json, no forgetting/forgetting.json). "
                  f"Measure it with `tunelab eval --run {run} --task ... --output {run}/eval`.", ""]
    return lines


def usage_lines(export: dict, base: str) -> list[str]:
    kind, folder = export["kind"], "path/to/this/folder"
    lines = ["## How to load it", ""]
    if kind == "adapter":
        lines += ["A PEFT adapter: it needs its base model.", "", "```python",
                  "from peft import AutoPeftModelForCausalLM",
                  f'model = AutoPeftModelForCausalLM.from_pretrained("{folder}")',
                  "# or, with tunelab (resolves tunelab's aliases as the base):",
                  "from tunelab.models import load_model",
                  f'model, tokenizer = load_model("{base}", adapter="{folder}")', "```"]
    elif kind == "model":
        lines += [f"A plain transformers model folder (safetensors, {export['dtype']}); no peft needed.", "",
                  "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  f'model = AutoModelForCausalLM.from_pretrained("{folder}")',
                  f'tokenizer = AutoTokenizer.from_pretrained("{folder}")', "```"]
    else:
        gguf = export["gguf_file"]
        lines += [f"`{gguf}`: GGUF ({export['gguf_type']}) for llama.cpp, written by llama.cpp's own converter "
                  "(convert_hf_to_gguf.py); the tokenizer and chat template are inside the file.", "", "```bash",
                  f"llama-cli -m {gguf} -cnv            # llama.cpp, chat with the model's template",
                  f"ollama create my-model -f Modelfile  # Ollama (Modelfile: FROM ./{gguf})",
                  "ollama run my-model", "```", "", "```python",
                  f'from llama_cpp import Llama; llm = Llama(model_path="{gguf}")   # llama-cpp-python',
                  "from transformers import AutoModelForCausalLM   # de-quantizes to float32",
                  f'model = AutoModelForCausalLM.from_pretrained("{folder}", gguf_file="{gguf}")', "```"]
    return lines


def card_text(run: Path, cfg, export: dict) -> str:
    summary = _json(run / "summary.json") or {}
    what = {"adapter": "PEFT adapter", "model": f"merged model ({export.get('dtype')})",
            "gguf": f"GGUF ({export.get('gguf_type')})"}[export["kind"]]
    library = {"adapter": "peft", "model": "transformers", "gguf": "gguf"}[export["kind"]]
    t = cfg.train
    preference = t.objective != "sft"
    # SFT: the card as it always was (tags [tunelab, <method>], "<method> fine-tune of")
    tags = f"tunelab, {t.method}" + (f", {t.objective}" if preference else "")
    title = (f"{t.method} {OBJECTIVE_NAMES[t.objective]} preference tuning of" if preference
             else f"{t.method} fine-tune of")
    lines = ["---", f"library_name: {library}", f"tags: [{tags}]", "---", "",
             f"# {cfg.name}: {title} {cfg.model.name}", "",
             f"Exported by tunelab from run `{run.name}` (checkpoint: {export['checkpoint']}) as a {what}.", "",
             *(objective_lines(cfg) if preference else []),
             *([f"Weights interpolated with the base model's (WiSE-FT): (1 - alpha) * base + alpha * tuned, "
                f"alpha = {export['alpha']:g}; the run's evaluation below is of the model as trained (alpha = 1).", ""]
               if export.get("alpha") is not None else []),
             *base_model_lines(cfg.model.name), "", *data_lines(cfg, summary), "",
             *training_lines(cfg, summary), "", *evaluation_lines(run, export["checkpoint"]),
             *usage_lines(export, cfg.model.name)]
    return "\n".join(lines) + "\n"


def write_model_card(out: Path, run: Path, cfg, export: dict) -> Path:
    """README.md in `out`; replaces the blank template peft writes there."""
    return write_text(Path(out) / "README.md", card_text(Path(run), cfg, export))
