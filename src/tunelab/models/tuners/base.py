"""What a fine-tuning method declares about itself (`Method`), and the peft helpers its module uses.

Each method module (full.py, lora.py, ...) builds one `Method`; the registry in
tunelab.models.tuners collects them. Training, resume, regularisation, the model card, export and
the continual stages read these fields instead of keeping their own lists of method names, so a
method is described in one place.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from tunelab.config.base import ConfigError

VIRTUAL_TOKENS = "adds virtual tokens and cannot be merged into the weights"  # prompt and prefix tuning


@dataclass(frozen=True)
class Method:
    """One fine-tuning method, as the rest of tunelab needs to know it."""

    name: str  # train.method
    attach: Callable  # (model, train_cfg, architecture, model_path) -> model with what is trained marked
    options: tuple[str, ...] = ()  # the train: sections it reads (qlora: train.lora and train.qlora)
    peft: bool = False  # wrapped by peft: a run's final/ is an adapter on the base model
    peft_type: str | None = None  # peft's PeftType of that adapter (how a loaded adapter folder is recognised)
    peft_forward: bool = False  # the forward adds virtual tokens or prefixes: no fast loss path, no packing
    half_frozen_weights: bool = False  # its frozen base may be stored in the autocast dtype
    quantization: Callable | None = None  # train_cfg -> transformers' quantization_config at load time
    unmergeable: str | None = None  # why its adapter cannot be folded into the weights (None: it can)
    merged_export: str | None = None  # why `tunelab export --merge/--gguf` refuses it although it merges
    regularization: str | None = None  # why L2-SP / EWC refuse it (None: supported)

    def export_refusal(self) -> str | None:
        """Why a merged or GGUF export of this method is refused (None: it is allowed)."""
        if self.unmergeable:
            return f"a {self.name} adapter {self.unmergeable}; export it without --merge or --gguf (PEFT format)"
        return self.merged_export


def peft_task_type(architecture: str):
    from peft import TaskType

    return TaskType.SEQ_2_SEQ_LM if architecture == "seq2seq" else TaskType.CAUSAL_LM


@contextmanager
def peft_refusals(method: str, model, hints: dict[str, str] | None = None):
    """peft's ValueError for a model it cannot adapt this way, as one ConfigError naming the model type;
    `hints` adds what to do for messages that contain a key."""
    try:
        yield
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        hint = "".join(h for key, h in (hints or {}).items() if key in str(exc))
        raise ConfigError(f"train.method={method}: peft cannot apply it to {model_type} models: {exc}{hint}") from None
