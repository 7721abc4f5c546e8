"""The training loop: `train(cfg) -> run folder`, in parts you can read top to bottom.

    state = setup(cfg, resume)   # model, data, optimizer; lock and open the run folder (setup.py)
    fit(state)                   # epochs of optimizer steps (steps.py), validation (validate.py),
                                 # checkpoints (checkpoint.py), early stopping
    finish(state)                # summary.json (status, time by phase), final/ model; the lock is
                                 # released once the forgetting section's scoring after training is done

`train()` installs no signal handlers unless asked (`handle_signals=True`, as the CLI does):
then Ctrl-C or SIGTERM end training after the current step with a checkpoint, and stop any other
phase (model and data, the forgetting section's scoring, validation) at once, in its batch
(tunelab.signals): summary.json says `interrupted` (SIGINT) or `terminated` (SIGTERM) and the
`phase`, and train() raises `tunelab.signals.Stopped` (the CLI exits 130 / 143). A validation
callback (`on_validation(step, results) -> bool`) can stop training the same way; the search's
pruner uses it. `train()` can be called many times in one process, also under `accelerate
launch` with several processes (continual stages, search trials).

Trackers (`train.report_to`) receive the run's report.html when the caller passes `report`, a
function that writes the run's report and returns its files, report.html first (the CLI passes
tunelab.report.write_report): report/ comes after train/, so train/ does not import it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

from tunelab.files import DiskFull
from tunelab.runfolder import RunFolder
from tunelab.train import checkpoint as ckpt
from tunelab.train.distributed import full_model_state, is_sharded
from tunelab.train.preference import METRICS as PREFERENCE_METRICS
from tunelab.train.progress import phase
from tunelab.signals import Stopped, check, handling_signals, in_phase, received_in
from tunelab.train.run import heartbeat, peak_rss_mb, run_dir, run_summary, write_summary
from tunelab.train.setup import resolve_precision, say, setup  # noqa: F401  (resolve_precision: public)
from tunelab.train.state import TrainState, ValidationCallback, stop_on_signals
from tunelab.train.steps import epoch_plan, train_step
from tunelab.train.validate import validate

LOGGED_EACH_STEP = ("loss", "lr", "grad_norm", "tokens_per_s")
# report(run) writes the run's report and returns its files, report.html first (tunelab.report.write_report).
ReportWriter = Callable[[Path], Sequence[Path]]


def train(cfg, resume: bool = False, data=None, *, on_validation: ValidationCallback | None = None,
          handle_signals: bool = False, report: ReportWriter | None = None) -> Path:
    """Fine-tune per cfg; returns the run folder. `data`: a PreparedData (default: tunelab.data.prepare);
    `report`: writes the run's report for the trackers (None: they get the run's files without it)."""
    with handling_signals(handle_signals):
        return _train(cfg, resume, data, on_validation, handle_signals, report)


def _train(cfg, resume, data, on_validation, handle_signals, report=None) -> Path:
    entered = time.perf_counter()
    try:
        with in_phase("setup"):
            state = setup(cfg, resume, data, on_validation)
    except Stopped as exc:
        if resume:
            mark_stopped_summary(run_dir(cfg), exc)
        exc.hint = "continue with --resume" if resume else None
        raise
    state.progress.clock.begin(entered)  # the time until now was setup (model, data, optimizer, restore)
    scorers = forgetting_world(state)
    try:
        with heartbeat(state):  # summary.json gets the time every 30 s, whatever the phase
            try:
                if scorers is not None:
                    from tunelab.evaluate.forgetting import forgetting_during_training

                    with phase(state, "pre_scoring"):  # the base model's scores first
                        forgetting_during_training(cfg, state.run, "before", scorers)
                # "training" names the whole loop, so a signal between steps (while a step is
                # logged) says training too, not the command's name; validation and saving nest
                with stop_on_signals(state.stop, handle_signals), in_phase("training"):
                    fit(state)
            except BaseException as exc:
                mark_failure(state, exc)
                state.trackers.close(state.counters.status)
                raise
            finally:
                finish(state)
            if stop_agreed(state):  # a signal during training: stopped after a step, with a checkpoint
                raise stopped(state, Stopped(state.stop.agreed, received_in() or "training"))
            if scorers is not None and final_written(state, scorers):
                from tunelab.evaluate.forgetting import forgetting_during_training

                try:
                    with phase(state, "post_scoring"):  # scores final/, writes forgetting.json
                        check()
                        forgetting_during_training(cfg, state.run, "after", scorers)
                except Stopped as exc:  # final/ is written; --resume scores it (finished batches: cached)
                    state.counters.status = exc.status
                    raise stopped(state, exc) from None
            if state.main and state.trackers.items:
                send_results(state, report)
    finally:
        state.trackers.close(state.counters.status)
        release(state)
    return state.run


def forgetting_world(state: TrainState):
    """Which processes score the `forgetting:` tasks (None: not this one). Every process, each a
    share of the batches (evaluate/shard.py), unless lm-eval tasks are among them: lm-eval runs
    in the main process alone."""
    section = getattr(state.cfg, "forgetting", None)
    if section is None:
        return None
    from tunelab.evaluate.shard import ONE, World

    if state.world > 1 and not (section.lm_eval and section.lm_eval.tasks):
        return World(state.rank, state.world)
    return ONE if state.main else None


def final_written(state: TrainState, scorers) -> bool:
    """Whether final/ exists, as the main process sees it (the scoring processes must agree)."""
    found = [(state.run / "final").exists()]
    if scorers.size > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(found, from_process=0)
    return found[0]


def fit(state: TrainState) -> None:
    """Epochs of steps until total_steps, early stopping, a stop request or the end of the data."""
    t, c = state.cfg.train, state.counters
    if t.eval_at_start and c.step == 0:
        timed_validate(state)
    elif c.step and c.validated_step != c.step and t.eval_every is not None and c.step % t.eval_every == 0:
        timed_validate(state)  # a signal abandoned this step's validation: redo it before going on
    while c.step < state.total_steps and c.status == "running" and not stop_agreed(state):
        seqs, plan = epoch_plan(state.data, t, state.architecture, state.seed, c.epoch, state.world)
        for parts in plan[c.step_in_epoch:]:
            with phase(state, "training"):
                event = train_step(state, seqs, parts)
            stop_requested = event.pop("stop_requested")
            if c.step % t.log_every == 0 or c.step == state.total_steps:
                log_step(state, event)
            state.progress.update(c.step, event["loss"], event["tokens_per_s"])
            verdict = timed_validate(state) if t.eval_every is not None and c.step % t.eval_every == 0 else None
            if t.checkpoint_every and c.step % t.checkpoint_every == 0:
                ckpt.save_checkpoint(state)
            if stop_agreed(state, stop_requested):  # a signal (also one that abandoned validation)
                c.status = state.stop.status
                state.stopped_in = state.stopped_in or received_in() or "training"
                state.progress.message(f"{state.stop.agreed or 'signal'}: checkpoint at step {c.step}; "
                                       f"continue with --resume")
                break
            if verdict is not None:
                c.status = verdict
                break
            if c.step >= state.total_steps:
                break
        else:  # the epoch ran to its end
            c.epoch += 1
            c.step_in_epoch = 0
            verdict = timed_validate(state)
            if verdict is not None:
                c.status = verdict
    if c.status == "running" and not stop_agreed(state):
        c.status = "completed"
        timed_validate(state)
    if stop_agreed(state) and c.status in ("running", "completed"):  # --resume validates and writes final/
        c.status = state.stop.status
        state.stopped_in = state.stopped_in or received_in() or "training"
    ckpt.save_checkpoint(state)
    if c.status in ("completed", "early_stopped"):
        # Under FSDP every process sends its shards to the main process, which writes one model.
        whole = full_model_state(state.loss_model) if is_sharded(state.loss_model) else None
        if state.main:
            with phase(state, "saving"):
                write_final(state.accelerator.unwrap_model(state.loss_model).model, state.tokenizer,
                            state.run / "final", state.cfg.model, whole)
    if state.world > 1:  # each process's peak memory, for summary.json (sharding shows here)
        from accelerate.utils import gather_object

        state.process_rss_mb = [round(mb, 1) for mb in gather_object([peak_rss_mb()])]


def stop_agreed(state: TrainState, requested_anywhere: bool = False) -> bool:
    """Whether training stops now. One process: whenever a signal came. Several: only once a step's
    all-reduced statistics said a signal came to any of them (`requested_anywhere`), so that all
    stop after the same step and run the same collectives until then; a launcher passes a signal
    on to each process at its own moment, and one that comes after a step's all-reduce counts at
    the next step."""
    stop = state.stop
    if state.world == 1:
        stop.agreed = stop.reason
    elif requested_anywhere and stop.agreed is None:
        stop.agreed = stop.reason or "SIGTERM"  # the launcher's signal reached the others first
    return stop.agreed is not None


def timed_validate(state: TrainState) -> str | None:
    """Validation; a signal abandons it between batches (training then stops with a checkpoint,
    and --resume redoes this validation before the next step)."""
    with phase(state, "validation"):
        try:
            return validate(state)
        except Stopped:
            if not state.stop.reason:  # not held back for a checkpoint: not ours to handle
                raise
            state.stopped_in = state.stopped_in or received_in() or "validation"  # where the signal came
            return None


def log_step(state: TrainState, event: dict) -> None:
    state.log.write(event)
    keys = (*LOGGED_EACH_STEP, "penalty", *PREFERENCE_METRICS)  # rewards/..., kl: preference objectives
    state.trackers.log_metrics({f"train/{k}": event[k] for k in keys if k in event}, event["step"])


def write_final(model, tokenizer, folder: Path, model_cfg, state_dict: dict | None = None) -> None:
    """The final adapter (PEFT format) or full model (safetensors), plus the tokenizer, atomically.
    An adapter names its base portably (models/portable.py), not by the cache path it was loaded from.
    `state_dict`: the whole model's tensors when the model itself holds only shards (FSDP)."""
    from tunelab.files import disk_errors
    from tunelab.models.portable import record_base

    tmp = folder.with_name(".tmp-final")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with disk_errors(tmp):
            model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
            tokenizer.save_pretrained(tmp)
            record_base(tmp, model_cfg)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)


def send_results(state: TrainState, report: ReportWriter | None = None) -> None:
    """To the trackers: the forgetting report's numbers, then the run's result files and, when the
    caller gave a report writer, its report.html."""
    run, step = state.run, state.counters.step
    forgetting = RunFolder.of(run).forgetting_report()
    if forgetting:
        rows = forgetting["tasks"]
        numbers = {f"forgetting/{r['task']}/{k}": r[k] for r in rows for k in ("diff", "p_value")}
        numbers.update({f"forgetting/{r['task']}/tuned": r["tuned"]["value"] for r in rows})
        if forgetting["summary"].get("held_out_change") is not None:
            numbers["forgetting/held_out_change"] = forgetting["summary"]["held_out_change"]
        state.trackers.log_metrics(numbers, step)
    files = [run / "summary.json", run / "config.resolved.yaml", run / "forgetting" / "forgetting.json",
             run / "forgetting" / "forgetting.md"]
    if report is not None:
        files.append(Path(report(run)[0]))
    for path in files:
        state.trackers.log_file(path)


def stopped(state: TrainState, exc: Stopped) -> Stopped:
    """A signal's Stopped, with the phase and step for summary.json and the CLI's line."""
    state.stopped_in = state.stopped_in or exc.phase
    exc.phase, exc.step, exc.hint = state.stopped_in, state.counters.step, "continue with --resume"
    return exc


def mark_stopped_summary(run: Path, exc: Stopped) -> None:
    """A resumed run stopped before its state was built (model, data): its summary.json says so."""
    summary = RunFolder.of(run).summary()
    if summary:
        try:
            write_summary(run, {**summary, "status": exc.status, "phase": exc.phase})
        except (OSError, DiskFull):
            pass


def mark_failure(state: TrainState, exc: BaseException) -> None:
    """Record why the run ended early, for summary.json."""
    c = state.counters
    if isinstance(exc, Stopped):
        c.status = exc.status
        stopped(state, exc)
        return
    if isinstance(exc, KeyboardInterrupt):
        c.status = "interrupted"
    elif c.status in ("running", "completed"):
        c.status = "failed"
    state.error = f"{type(exc).__name__}: {exc}"


def finish(state: TrainState) -> None:
    """summary.json (also after a failure: it says what happened)."""
    state.progress.close()
    if state.main:
        try:
            write_summary(state.run, run_summary(state))
        except (OSError, DiskFull) as exc:  # e.g. the disk is full: the error that got us here is the one to show
            say(f"tunelab: could not write {state.run / 'summary.json'}: {exc}")


def release(state: TrainState) -> None:
    """After the scoring that follows training: summary.json with the whole time of this start
    (the status finish() wrote stays), then the lock."""
    if state.main:
        try:
            write_summary(state.run, run_summary(state))
        except (OSError, DiskFull):
            pass  # finish() wrote the status (or said why it could not); only the time since then is missing
        if state.lock is not None:
            state.lock.release()
