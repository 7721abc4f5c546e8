"""`tunelab eval`: score a model, adapter or run on tasks; results JSON + per-example JSONL."""

from __future__ import annotations

from pathlib import Path


def add_common(parser) -> None:
    parser.add_argument("--task", "--tasks", dest="tasks", action="extend", nargs="+", default=[], metavar="TASK",
                        help="RECIPE=PATH[,opt=value...] (recipes: sst2, dialogsum, mmlu, t0) or a task YAML; "
                             "repeat for several")
    parser.add_argument("--config", help="experiment YAML: tasks and settings from its eval: section")
    parser.add_argument("--limit", type=int, help="at most N examples per task (first N of the split)")
    parser.add_argument("--split", default=None, help="split to score (default test)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=None)
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed")
    parser.add_argument("--no-cache", action="store_true", help="recompute everything (cache: TUNELAB_HOME/eval-cache)")
    parser.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (default 1000)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="accept pickle-only weights (read with torch.load(weights_only=True)); see "
                             "model.allow_pickle in docs/training.md")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run a model's own Python code (model.trust_remote_code); only for models you trust")
    parser.add_argument("--allow-train-overlap", action="store_true",
                        help="score a tuned model on examples it was trained on (refused by default; the "
                             "overlap is reported either way)")
    parser.add_argument("--chat-template", metavar="NAME|FILE",
                        help="chat template for every task: chatml, llama-3, mistral, gemma, phi-3, alpaca, plain, "
                             "a Jinja file, or tokenizer (default: a run's own choice, else the tokenizer's); "
                             "a task's chat_template=false scores it without one (docs/data.md)")
    parser.add_argument("--lm-eval", action="append", metavar="TASKS",
                        help="lm-evaluation-harness tasks by name, comma-separated (needs 'tunelab[lmeval]'; "
                             "lm-eval's own tasks need their datasets: online or in the HF cache)")
    parser.add_argument("--lm-eval-include", metavar="DIR", help="a folder of local lm-eval task YAMLs (offline)")
    parser.add_argument("--lm-eval-fewshot", type=int, metavar="N",
                        help="few-shot examples for every lm-eval task (default: each task's own)")


def add_arguments(parser) -> None:
    parser.add_argument("--model", help="alias, local folder or hub id (default: the run's base model, or with "
                                        "--config the config's model.name)")
    parser.add_argument("--adapter", help="PEFT adapter folder")
    parser.add_argument("--run", help="tunelab run folder (its final/ adapter or model)")
    add_common(parser)
    parser.add_argument("--output", "-o", required=True, help="folder for results.json and <task>.examples.jsonl")


def eval_settings(args) -> tuple[list, dict]:
    """Tasks and evaluate() keyword arguments from --config's eval: section and the flags."""
    from pathlib import Path

    from tunelab.config import load_config
    from tunelab.config.evaluate import EvalConfig
    from tunelab.cli.errors import UserError

    config_dir = "."
    section = EvalConfig()
    extra = {}
    if args.config:
        from tunelab.evaluate.harness import training_data

        cfg = load_config(args.config)
        section = cfg.eval or section
        config_dir = cfg.config_dir
        # bare task names refer to the config's data tasks, split as training splits them
        extra = training_data(cfg)
    given = bool(args.tasks or args.lm_eval)  # tasks on the command line replace the config's, both kinds
    tasks = list(args.tasks) if given else list(section.tasks)
    lm_eval = lm_eval_settings(args, None if given else section.lm_eval, config_dir)
    if not tasks and not lm_eval:
        raise UserError("no tasks: give --task RECIPE=PATH (e.g. sst2=../shared/data/sst2), --lm-eval TASKS, or "
                        "--config with eval.tasks")
    gen = section.generation
    updates = {k: v for k, v in {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
                                 "seed": args.seed, "do_sample": True if args.sample else None,
                                 "top_k": args.top_k, "top_p": args.top_p, "stop": args.stop}.items() if v is not None}
    gen = gen.model_copy(update=updates)
    from tunelab.evaluate.harness import limit_origin

    # where the limit came from goes into results.json, so a cut is never silent
    origin = limit_origin("--limit") if args.limit is not None else limit_origin("eval.limit", section)
    kwargs = dict(limit=args.limit if args.limit is not None else section.limit, limit_from=origin,
                  split=args.split or section.split,
                  batch_size=args.batch_size or section.batch_size, dtype=args.dtype or section.dtype,
                  generation=gen, cache=section.cache and not args.no_cache,
                  n_resamples=args.bootstrap if args.bootstrap is not None else section.bootstrap_resamples,
                  confidence=section.confidence,
                  config_dir=str(Path(config_dir)),
                  allow_train_overlap=args.allow_train_overlap or section.allow_train_overlap, **extra)
    if args.chat_template:
        from tunelab.config.base import ConfigError
        from tunelab.config.data import DataConfig
        from tunelab.data.templates import absolute_choice

        try:  # the same names and did-you-mean as data.chat_template
            DataConfig(chat_template=args.chat_template)
        except ValueError as exc:
            raise ConfigError(f"--chat-template: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
        kwargs["chat_template"] = absolute_choice(args.chat_template, Path.cwd())
    if lm_eval:
        kwargs["lm_eval"] = lm_eval
    options = {"allow_pickle": args.allow_pickle, "trust_remote_code": args.trust_remote_code}
    if any(options.values()):
        kwargs["model_options"] = options
    return tasks, kwargs


def lm_eval_settings(args, section, config_dir: str) -> dict | None:
    """The lm-eval tasks: --lm-eval, else the config's eval.lm_eval; each flag wins over its key. A
    relative --lm-eval-include is relative to the current folder, the config's include to the config's."""
    from tunelab.cli.errors import UserError
    from tunelab.evaluate.lmeval import settings_of

    own = settings_of(section, config_dir=config_dir) or {}
    tasks = args.lm_eval or own.get("tasks")
    if not tasks:
        if args.lm_eval_include or args.lm_eval_fewshot is not None:
            raise UserError("--lm-eval-include/--lm-eval-fewshot need lm-eval task names: --lm-eval NAME[,NAME...]")
        return None
    include = str(Path(args.lm_eval_include).resolve()) if args.lm_eval_include else own.get("include")
    shots = args.lm_eval_fewshot if args.lm_eval_fewshot is not None else own.get("num_fewshot")
    return settings_of({"tasks": tasks, "include": include, "num_fewshot": shots})


def print_scored(name: str, res: dict, indent: str = "") -> None:
    """A task's line: split and n ("n=50 of 180" when a limit cut the split), then what was scored
    out of what and why (results.json's `scored`: the split rule, the limit and how to lift it)."""
    from tunelab.evaluate.harness import count_text

    overlap = (res.get("contamination") or {}).get("overlap")
    note = f"  ({overlap} training examples included)" if overlap else ""
    note += "  (lm-eval task; contamination not checked)" if res.get("source") == "lm-eval" else ""
    print(f"{indent}{name}: {res['split']} split, n={count_text(res)}{note}")
    if res.get("scored"):
        print(f"{indent}  {res['scored']}")


def print_results(results: dict) -> None:
    for name, res in results["tasks"].items():
        print_scored(name, res)
        for metric, entry in res["metrics"].items():
            ci = entry.get("ci")
            ci_text = f"  95% CI [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
            scale = " (0-100)" if entry.get("scale") == "0-100" else ""
            print(f"  {metric + scale:18s} {entry['value']:.4f}{ci_text}")


def config_model(args, kwargs: dict) -> str | None:
    """--model; else, with --config and neither --run nor --adapter, the config's model.name and its
    load options (revision, trust_remote_code, allow_pickle, ...), added to `kwargs`."""
    if args.model or not args.config or args.run or args.adapter:
        return args.model
    from tunelab.config import load_config
    from tunelab.evaluate.loading import load_options

    model_cfg = load_config(args.config).model
    flags = {k: v for k, v in kwargs.get("model_options", {}).items() if v}
    kwargs["model_options"] = {**load_options(model_cfg), **flags}
    return model_cfg.name


def run(args) -> int:
    from tunelab.evaluate.harness import evaluate
    from tunelab.evaluate.shard import launched_world

    tasks, kwargs = eval_settings(args)
    model = config_model(args, kwargs)
    # Under `accelerate launch --num_processes N` the processes split the examples (data parallel,
    # docs/evaluation.md); the main one writes and prints what one process would.
    world = launched_world()
    results = evaluate(model, tasks, adapter=args.adapter, run=args.run, output_dir=args.output, world=world,
                       **kwargs)
    if world.main:
        print_results(results)
        print(f"results: {args.output}/results.json (per-example: <task>.examples.jsonl)")
    return 0
