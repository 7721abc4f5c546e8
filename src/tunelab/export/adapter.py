"""An adapter export: the trained adapter in PEFT format, as trained (float32), with its tokenizer.

The adapter names its base model portably (tunelab.models.portable), not by the cache path the run
loaded it from, so the folder loads on another machine with peft or tunelab.
"""

from __future__ import annotations

from pathlib import Path


def write_adapter(model, tokenizer, out: Path, model_cfg) -> None:
    from tunelab.models.portable import record_base

    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    record_base(out, model_cfg)
