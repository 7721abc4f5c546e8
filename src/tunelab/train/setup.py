"""`setup(cfg, resume)`: everything the loop needs, checked before the run folder is touched.

Order matters for run integrity: the config, the model, the data and the optimizer are built
first, so a typo, a missing model or an unknown optimizer fails before anything is written; only
then is the run folder locked and created (a resume locks it first of all, so a live run is
refused before any work). A resume checks that the config and data are the run's own, and
restores the newest checkpoint that verifies.
"""

from __future__ import annotations

import contextlib
import sys
import time

import torch

from tunelab.config.base import ConfigError
from tunelab.config.load import write_resolved
from tunelab.train import checkpoint as ckpt
from tunelab.train.batching import to_sequences
from tunelab.train.distributed import shard_model
from tunelab.train.loss import CompletionLoss, peft_forward
from tunelab.train.optim import build_optimizer, build_scheduler
from tunelab.train.preference import (PAIR_OBJECTIVES, PreferenceLoss, check_preference, store_reference_logps,
                                     stored_reference)
from tunelab.train.probes import check_packing
from tunelab.train.attention import choose_training_attention
from tunelab.train.compile import check_compile, compile_if_it_pays
from tunelab.train.lora_linear import enable_fused_lora
from tunelab.train.recompute import enable_selective_recompute
from tunelab.train.regularize import build_regularizer, check_regularization, save_fisher
from tunelab.train.progress import Progress
from tunelab.train.resume import check_resume_config, check_resume_data, data_fingerprint
from tunelab.train.run import (MetricsLog, RunLock, check_new_run, clear_failed_start, environment, reset_peak_rss,
                               run_dir, run_summary, write_json, write_summary)
from tunelab.train.state import Counters, TrainState
from tunelab.train.steps import epoch_plan
from tunelab.train.trackers import Trackers, check_trackers


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def native_bf16(device_type: str) -> bool:
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    return bool(cpu and (getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                         or getattr(cpu, "_is_amx_tile_supported", lambda: False)()))


def resolve_precision(precision: str, device_type: str) -> str:
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device_type) else "fp32"


def autocast_for(precision: str, device_type: str):
    """A context-manager factory: autocast in the training precision, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device_type, dtype=dtype)


def check_config(cfg) -> None:
    """Problems a config can have that need no model: raised before any work."""
    t = cfg.train
    if t.packing and (peft_forward(t.method) or cfg.model.architecture == "seq2seq"):
        raise ConfigError(f"train.packing: not supported with method {t.method} or seq2seq models")
    check_trackers(t.report_to)
    check_preference(cfg)  # train.objective other than sft: the data kinds and methods it needs
    if getattr(cfg, "forgetting", None) is not None and (cfg.forgetting.tasks or cfg.forgetting.lm_eval):
        from tunelab.evaluate.forgetting import check_forgetting_tasks

        check_forgetting_tasks(cfg)


def check_launch() -> None:
    """accelerate's FSDP and DeepSpeed plugins take over backward and the optimizer, which this
    loop drives itself: refused, pointing to train.distributed (docs/training.md). `accelerate
    launch` tells its processes through these variables."""
    import os

    for kind in ("FSDP", "DEEPSPEED"):
        if os.environ.get(f"ACCELERATE_USE_{kind}", "").lower() not in ("true", "1"):
            continue
        raise ConfigError(f"accelerate's {kind} plugin is not used by tunelab: launch without it (no --use_fsdp / "
                          f"--use_deepspeed, or an `accelerate config` without them) and set "
                          f"train.distributed.strategy=fsdp for sharded training (docs/training.md)")


def build_model(cfg, precision: str, device_type: str = "cpu"):
    """Load the base model, attach the method; (model, tokenizer, architecture, trainable, total)."""
    from tunelab.models.load import load_model
    from tunelab.models.resolver import resolve_model
    from tunelab.models.tuners import apply_method, count_parameters, get_method

    t = cfg.train
    method = get_method(t.method)
    dtype, quant = None, None
    if method.quantization is not None:  # qlora: the base is quantised as it loads
        quant = method.quantization(t)
    elif t.half_frozen_weights and method.half_frozen_weights and precision != "fp32" \
            and cfg.model.dtype == "float32":
        # The frozen base only ever runs under autocast: store it in that dtype once.
        dtype = "bfloat16" if precision == "bf16" else "float16"
    model, tokenizer = load_model(cfg.model, dtype=dtype, quantization_config=quant)
    architecture = "seq2seq" if model.config.is_encoder_decoder else "causal"
    if device_type == "cpu":  # eager attention recomputed in backward, where it pays (train/attention.py)
        longest = max(cfg.data.max_length, t.pack_length or 0) if t.packing else cfg.data.max_length
        if t.objective in PAIR_OBJECTIVES:  # a pair's row holds the prompt and both answers
            longest = 2 * cfg.data.max_length
        choose_training_attention(model, cfg.model.attn_implementation, t.batch_size, longest)
    if t.gradient_checkpointing:
        enable_gradient_checkpointing(model, t.gradient_checkpointing_every)
    elif t.selective_recompute:
        enable_selective_recompute(model)
    model = apply_method(model, t, architecture, resolve_model(cfg.model.name))
    if precision != "fp32":
        keep_adapter_inputs_in_autocast_dtype(model)
    if device_type == "cpu":  # base matmul, LoRA and scaling as one autograd node (train/lora_linear.py)
        enable_fused_lora(model)
    for p in model.parameters():  # optimizer state and updates in fp32
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    model.train()
    trainable, total = count_parameters(model)
    return model, tokenizer, architecture, trainable, total


def build_loss_model(model, architecture: str, t, data, precision: str, accelerator, pad_id: int,
                     max_length: int | None = None):
    """The module training calls: the completion-only loss, or a preference objective's loss (with
    the starting model's log-probs computed once for full fine-tuning: train/preference.py)."""
    if t.objective == "sft":
        return CompletionLoss(model, architecture, t.method)
    loss_model = PreferenceLoss(model, architecture, t.method, t.objective, t.preference, max_length)
    if stored_reference(t):
        store_reference_logps(loss_model, data, autocast_for(precision, accelerator.device.type),
                              accelerator.device, t.eval_batch_size, pad_id)
    return loss_model


def keep_adapter_inputs_in_autocast_dtype(model) -> None:
    """peft casts each adapter's input to the adapter's dtype (fp32 here) before its matmul; under
    autocast the matmul casts it straight back to bf16/fp16, so the result is the same, but the fp32
    copy is kept for backward: on SmolLM2 LoRA (7 adapted linears a layer) that was ~0.5 GB at
    batch 8 x 256. Switch the cast off (peft's own `cast_input_dtype_enabled` flag)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:
        return
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = False


def enable_gradient_checkpointing(model, every_n_layers: int) -> None:
    """Recompute the activations of every N-th decoder layer in backward instead of keeping them."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs, every_n_layers=every_n_layers)
    elif every_n_layers == 1:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        raise ConfigError("train.gradient_checkpointing_every > 1 needs transformers >= 5")
    model.enable_input_require_grads()


def validation_sets(data, architecture: str, limit: int | None) -> tuple[dict, dict]:
    """Per task: validation sequences for the loss, and the examples for generation metrics."""
    val_sets, val_examples = {}, {}
    for name, task in data.tasks.items():
        val = task.splits.get("validation")
        # a table (data/table.py) stays one without a limit: its sequences are read when batched
        val = list(val or [])[:limit] if limit is not None or not hasattr(val, "token_arrays") else val
        if len(val):
            val_sets[name] = to_sequences(val, architecture, include_prompt_loss=False)
            val_examples[name] = val
    return val_sets, val_examples


def setup(cfg, resume: bool = False, data=None, on_validation=None) -> TrainState:
    """Build the model, data and optimizer, then lock and open the run folder (see module docstring)."""
    from accelerate import Accelerator

    t = cfg.train
    seed = t.seed if t.seed is not None else cfg.seed
    check_launch()
    reset_peak_rss()  # this run's own peak memory, also when it is not the process's first run
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process
    check_config(cfg)
    check_regularization(cfg, accelerator.num_processes)
    check_compile(cfg, accelerator.num_processes)
    run = run_dir(cfg)
    lock = RunLock(run) if resume and main else None  # a live run is refused before any work
    try:
        changes = check_resume_config(run, cfg, world=accelerator.num_processes) \
            if resume and (run / "config.resolved.yaml").exists() else {}
        if not resume:
            check_new_run(run)
        precision = resolve_precision(t.precision, accelerator.device.type)
        if precision == "bf16" and not native_bf16(accelerator.device.type):
            say("tunelab: warning: this processor has no native bf16 (AVX512-BF16/AMX); bf16 autocast is "
                "emulated and usually slower than fp32 here (train.precision=auto picks fp32)")
        ckpt.set_all_seeds(seed)
        model, tokenizer, architecture, n_trainable, n_total = build_model(cfg, precision, accelerator.device.type)
        from tunelab.data import use_chat_template

        # The chosen chat template goes on the tokenizer the run saves with final/ (prepare() does it
        # too, but continual stages hand their data in).
        use_chat_template(tokenizer, cfg.data.chat_template, cfg.config_dir)
        if data is None:
            from tunelab.data import prepare
            from tunelab.signals import in_phase

            with in_phase("data"):  # a signal here stops at once (nothing of the run is written yet)
                data = prepare(cfg, tokenizer)
        if getattr(cfg, "forgetting", None) is not None and (cfg.forgetting.tasks or cfg.forgetting.lm_eval):
            from tunelab.evaluate.forgetting import check_forgetting_tasks

            check_forgetting_tasks(cfg, tokenizer, data)  # before any model runs or folder is written
        fingerprint = data_fingerprint(data)
        if resume:
            check_resume_data(run, fingerprint)
        items, plan = epoch_plan(data, t, architecture, seed, 0, accelerator.num_processes)
        steps_per_epoch = len(plan)
        if steps_per_epoch == 0:
            raise ConfigError("the training split is empty: nothing to train on")
        total_steps = t.max_steps or steps_per_epoch * t.epochs
        if compile_if_it_pays(cfg, model, architecture, items, steps_per_epoch, total_steps, accelerator.num_processes,
                              accelerator.device.type, n_trainable, n_total) and main:
            say("tunelab: the first step compiles the decoder layers (torch.compile, once: seconds to a minute); "
                "train.compile=false runs them uncompiled")
        if t.packing:
            check_packing(model)  # a probe: refused, naming the model type, if packed examples see each other
        loss_model = build_loss_model(model, architecture, t, data, precision, accelerator, tokenizer.pad_token_id,
                                      cfg.data.max_length)
        # before DDP or FSDP wraps it: the pair layouts the collation may use
        layout = {"shared_prompt": getattr(loss_model, "shared_prompt", False),
                  "attention_weight": getattr(loss_model, "attention_weight", 0.0)}
        # theta0 and EWC's Fisher: of the starting weights, before DDP wraps the model (and before restore)
        regularizer = build_regularizer(cfg, model, loss_model, tokenizer, run, resume, accelerator,
                                        autocast_for(precision, accelerator.device.type))
        if t.distributed.strategy == "fsdp" and accelerator.num_processes > 1:
            loss_model = shard_model(loss_model, t.distributed, precision, accelerator.device.type)
        else:
            loss_model = accelerator.prepare(loss_model)  # DDP with several processes
        optimizer = build_optimizer(model, t)
        scheduler = build_scheduler(optimizer, t, total_steps)
        if main and not resume:
            lock = RunLock(run)
            check_new_run(run)  # again, under the lock: another start may have won the race
            clear_failed_start(run, say)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    accelerator.wait_for_everyone()
    state = TrainState(cfg=cfg, seed=seed, accelerator=accelerator, precision=precision, model=model,
                       tokenizer=tokenizer, architecture=architecture, data=data, loss_model=loss_model,
                       optimizer=optimizer, scheduler=scheduler, total_steps=total_steps, n_trainable=n_trainable,
                       n_total=n_total, run=run, lock=lock, on_validation=on_validation,
                       autocast=autocast_for(precision, accelerator.device.type),
                       trainable=[p for p in model.parameters() if p.requires_grad],
                       scaler=torch.amp.GradScaler(accelerator.device.type) if precision == "fp16" else None,
                       sharded_checkpoints=t.distributed.strategy == "fsdp", regularizer=regularizer,
                       pair_layout=layout)
    state.val_sets, state.val_examples = validation_sets(data, architecture, t.eval_limit)
    state.log = MetricsLog(run / "metrics.jsonl", enabled=main)
    open_run_files(state, resume, changes, fingerprint)
    return state


def open_run_files(state: TrainState, resume: bool, changes: dict, fingerprint: str) -> None:
    """Write the run's own files, then restore the checkpoint of a resumed run."""
    cfg, run = state.cfg, state.run
    if state.main:
        (run / "checkpoints").mkdir(parents=True, exist_ok=True)
        if not (run / "config.resolved.yaml").exists() or changes:
            write_resolved(cfg, run)
        if not (run / "env.json").exists():
            write_json(run / "env.json", {**environment(cfg, state.seed, state.world), "data_fingerprint": fingerprint,
                                          "config_dir": str(cfg.config_dir)})
            write_train_keys(state)
        elif resume:
            record_processes(state)
        save_fisher(state.regularizer, run)  # a Fisher computed by this start (a resume loads it)
    state.accelerator.wait_for_everyone()
    if resume:
        restore(state)
        if changes:
            state.log.write({"event": "config_changed", "step": state.counters.step, "changes": changes})
    else:
        state.log.recover(0, say)  # a replaced failed start leaves no events behind
    if state.regularizer is not None:
        reg = state.regularizer
        state.log.write({"event": "regularization", "step": state.counters.step, "kind": reg.kind,
                         "weight": reg.weight, "fisher": reg.fisher_source})
    if state.counters.step == 0 and not state.counters.logged_data:
        state.log.write({"event": "data", "step": 0, "counts": getattr(state.data, "report", None)})
        state.counters.logged_data = True
    state.trackers = Trackers(run, cfg) if state.main else Trackers()
    state.progress = Progress(state.total_steps, state.counters.step, state.cfg.train.progress, enabled=state.main)
    state.started = time.perf_counter()
    if state.main:  # "running" until the end says otherwise; a kill -9 leaves it so (the lock is free then)
        write_summary(run, run_summary(state))


def record_processes(state: TrainState) -> None:
    """A resume on another number of processes (same global batch, resume.py): env.json says how
    many processes the run now has, so that the next resume compares with these."""
    import json

    env_file = state.run / "env.json"
    env = json.loads(env_file.read_text(encoding="utf-8"))
    if env.get("processes") != state.world:
        say(f"tunelab: resuming {state.run} on {state.world} processes (it ran on {env.get('processes')})")
        write_json(env_file, {**env, "processes": state.world})


def write_train_keys(state: TrainState) -> None:
    """Which inputs this run trains on (hashes), so that evaluations can refuse to score them as test data.
    The text is what write_json(indent=None) wrote before #25, byte for byte (the contamination
    guard, evaluate/provenance.py, reads older runs' files too), but a cached split's keys come from
    its content_key column: no Example is built and no Python list of a million keys is held."""
    import json

    from tunelab.files import to_jsonable, write_text

    tasks = []
    for name, task in state.data.tasks.items():
        split = task.splits["train"]
        if hasattr(split, "unique_content_keys"):  # an ExampleTable (data/table.py)
            keys = _json_keys(split.unique_content_keys())
        else:
            keys = json.dumps(sorted({ex.content_key for ex in split}), ensure_ascii=False)
        tasks.append(f"{json.dumps(str(name), ensure_ascii=False)}: {keys}")
    head = json.dumps(to_jsonable({"base_model": state.cfg.model.name}), ensure_ascii=False)[:-1]
    write_text(state.run / "train_keys.json", f'{head}, "tasks": {{{", ".join(tasks)}}}}}\n')


def _json_keys(keys, chunk: int = 1 << 16) -> str:
    """json.dumps(keys.to_pylist()) for an Arrow string array, converted a chunk at a time."""
    import json

    parts = [json.dumps(keys.slice(i, chunk).to_pylist(), ensure_ascii=False)[1:-1]
             for i in range(0, len(keys), chunk)]
    return f"[{', '.join(parts)}]"


def restore(state: TrainState) -> None:
    """Resume from the newest checkpoint that verifies; with none, start afresh (and say so)."""
    if state.main:
        ckpt.remove_temp_dirs(state.ckpt_dir)
    chosen = [None]
    if state.main:
        good = ckpt.latest_good_checkpoint(state.ckpt_dir, say)
        chosen = [good.name if good is not None else None]
    if state.world > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(chosen, from_process=0)
    if chosen[0] is None:
        say(f"tunelab: {state.run} has no checkpoint to resume from; starting from step 0")
        state.log.recover(0, say)
        return
    payload = ckpt.load_checkpoint(state.ckpt_dir / chosen[0], state.loss_model, state.model, state.optimizer,
                                   state.rank, state.seed)
    state.scheduler.load_state_dict(payload.pop("scheduler"))
    if state.scaler is not None:
        state.scaler.load_state_dict(payload.pop("scaler"))
    state.counters = Counters.from_checkpoint(payload)
    state.counters.status = "running"
    if state.main:
        say(f"tunelab: resuming {state.run} from checkpoint {chosen[0]} (step {state.counters.step} of "
            f"{state.total_steps})")
    state.log.recover(state.counters.step, say, state.counters.validated_step)
    state.log.write({"event": "resumed", "step": state.counters.step, "checkpoint": chosen[0]})
