"""`export_run`: a run's adapter in PEFT format, the adapter merged into the base weights, or a GGUF file.

The model comes from the run's final/ folder or a checkpoint (export/source.py); what is written:
the adapter (export/adapter.py), the merged model in any dtype (export/merged.py), or that merged
model converted by llama.cpp's own converter (export/gguf.py); every export folder gets a model
card (README.md, export/model_card.py). With `alpha`, the merged weights are first interpolated
with the base model's (WiSE-FT, tunelab.models.interpolate): (1 - alpha) * base + alpha * tuned,
in float32.

An export is all or nothing: it is written into a hidden sibling folder (`.<name>.partial`) and
renamed into place at the end, so a signal, an error or a full disk never leaves a half-written
folder where a finished one is expected; the partial folder is removed, and the next export
starts clean (also after a kill -9, which leaves the partial folder for the next one to replace).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from tunelab.config.base import ConfigError
from tunelab.export.merged import DTYPES


def check_options(merge: bool, dtype: str | None, gguf: str | None, alpha: float | None) -> None:
    """Refusals that need no model: raised before it loads."""
    from tunelab.export.gguf import GGUF_TYPES

    if alpha is not None and not (merge or gguf):
        raise ConfigError("--alpha interpolates merged weights: add --merge (or --gguf)")
    if gguf is not None and gguf not in GGUF_TYPES:
        raise ConfigError(f"--gguf-type {gguf!r}: choose from {', '.join(GGUF_TYPES)}")
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: choose from {', '.join(DTYPES)}")
    if gguf is not None and dtype not in (None, "float32", "fp32"):
        raise ConfigError("--dtype is for safetensors exports; a GGUF's type is --gguf-type")


def export_run(run: str | Path, merge: bool = False, checkpoint: str = "final", output: str | None = None,
               dtype: str | None = None, gguf: str | None = None, alpha: float | None = None) -> Path:
    """Write the export folder and its model card; return the folder.

    gguf: None, or "f16" | "bf16" | "q8_0" (implies merging); dtype: the merged or full model's
    safetensors dtype (float32 default; bf16 | fp16); alpha: interpolate the merged weights with
    the base's (0 = base, 1 = as trained; needs merge or gguf)."""
    from tunelab.export.gguf import converter
    from tunelab.export.merged import merged_model
    from tunelab.export.source import load_run_model, run_tokenizer
    from tunelab.models.interpolate import check_alpha

    run = Path(run)
    alpha = check_alpha(alpha)
    check_options(merge, dtype, gguf, alpha)
    if gguf is not None:
        converter()  # found or fetched before the model loads: a missing converter costs no load
    model, tokenizer, cfg = load_run_model(run, checkpoint)
    tokenizer = run_tokenizer(run, cfg, tokenizer)
    kind = "gguf" if gguf else "model" if merge or not hasattr(model, "peft_config") else "adapter"
    if kind == "adapter" and dtype not in (None, "float32", "fp32"):
        raise ConfigError("--dtype needs --merge: a PEFT adapter is saved as trained (float32)")
    default = "export-gguf" if kind == "gguf" else "export-merged" if merge else "export-adapter"
    default += "" if alpha is None else f"-alpha-{alpha:g}"  # beside the as-trained export, not over it
    out = Path(output) if output else run / default
    info = {"kind": kind, "checkpoint": checkpoint, "dtype": DTYPES[dtype or "float32"], "gguf_type": gguf}
    if kind != "adapter":
        model = merged_model(model, cfg.train.method)
    if alpha is not None:
        from tunelab.models.interpolate import interpolate_, load_base_state

        model = interpolate_(model, load_base_state(cfg.model, "float32"), alpha)
        info["alpha"] = alpha
    with staged(out) as folder:
        write_export(model, tokenizer, folder, run, cfg, info)
    return out


def write_export(model, tokenizer, folder: Path, run: Path, cfg, info: dict) -> None:
    """The export's files and model card into `folder` (the staging folder); `info["gguf_file"]`
    is set for a GGUF."""
    from tunelab.export.model_card import write_model_card
    from tunelab.signals import check

    if info["kind"] == "gguf":
        from tunelab.export.gguf import write_gguf

        info["gguf_file"] = write_gguf(model, tokenizer, folder, cfg, info["gguf_type"]).name
    elif info["kind"] == "model":
        from tunelab.export.merged import write_model

        write_model(model, tokenizer, folder, info["dtype"])
    else:
        from tunelab.export.adapter import write_adapter

        write_adapter(model, tokenizer, folder, cfg.model)
    check()  # a signal that came while the weights were written: stop before the folder appears
    write_model_card(folder, run, cfg, info)
    check()


@contextmanager
def staged(out: Path):
    """`with staged(out) as folder:` write into `folder`, a hidden sibling of `out`; on success it
    becomes `out` (into an existing `out`, entry by entry, as writing into it would), on any error
    or signal it is removed. Signals are held back while the finished folder is moved into place."""
    from tunelab.signals import deferring

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output {out}: a file is there, not a folder")
    absolute = out.resolve()
    folder = absolute.with_name(f".{absolute.name}.partial")
    shutil.rmtree(folder, ignore_errors=True)  # a partial folder a kill -9 left behind
    folder.mkdir(parents=True)
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    with deferring(lambda name: None):  # the export is written: finish moving it into place
        publish(folder, out)


def publish(folder: Path, out: Path) -> None:
    """`folder` becomes `out`: one rename when `out` does not exist; otherwise each entry replaces
    its namesake in `out` (other files there stay, as they did when exports wrote into it)."""
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder, out)
        return
    for entry in folder.iterdir():
        target = out / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    folder.rmdir()
