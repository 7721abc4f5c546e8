"""Several processes: DDP (a replica per process) or FSDP (parameters, gradients and optimizer
state sharded across processes), and the sharded checkpoints FSDP needs.

FSDP is PyTorch's own FSDP2 (`torch.distributed.fsdp.fully_shard`): each decoder layer (the
model's `_no_split_modules`, as accelerate's transformer-based wrap policy chooses them) is one
unit, the root holds the embeddings, the final norm and the head. Under bf16 the gathered
parameters are bf16 and gradients are reduced in fp32 (`MixedPrecisionPolicy`); autocast runs as
without FSDP. Nothing here shards by hand: the sharding, gathering and resharding on load are
torch.distributed's.

Checkpoints under FSDP use torch.distributed.checkpoint (DCP): every process writes its own shard
of the trainable parameters and of the optimizer state into `sharded/` as safetensors (DCP's
Hugging Face storage writer, which records each shard's offsets in the safetensors header, so
reading needs no pickle), and DCP's reader reshards on load: a checkpoint written by 2 processes
resumes on 1 process or on 4. Non-tensor optimizer state (hyperparameters, param groups) goes to
JSON, keyed by parameter name rather than position.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from tunelab.config.base import ConfigError
from tunelab.train.optimizer_state import join_optimizer_state, split_optimizer_state

SHARDED_DIR = "sharded"
FILE_BYTES = 128 * 1024 * 1024  # whole-tensor bytes per checkpoint file (each process writes its part)


def decoder_layers(model) -> list[torch.nn.Module]:
    """The model's repeated blocks: the classes transformers names in `_no_split_modules`."""
    names = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ConfigError(f"train.distributed.strategy=fsdp: {type(model).__name__} names no decoder layer class "
                          f"(_no_split_modules) to shard by; use strategy ddp")
    return layers


def shard_model(loss_model, options, precision: str, device_type: str):
    """FSDP2 over each decoder layer, then the root (loss_model: CompletionLoss); in place."""
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    kwargs = {"reshard_after_forward": options.reshard_after_forward}
    if precision != "fp32":
        half = torch.bfloat16 if precision == "bf16" else torch.float16
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=half, reduce_dtype=torch.float32)
    if options.cpu_offload:
        if device_type != "cuda":
            raise ConfigError("train.distributed.cpu_offload: the parameters already live in CPU memory on this "
                              "machine (no CUDA device); leave it false")
        kwargs["offload_policy"] = CPUOffloadPolicy()
    for layer in decoder_layers(loss_model.model):
        fully_shard(layer, **kwargs)
    fully_shard(loss_model, **kwargs)
    return loss_model


def is_sharded(loss_model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(loss_model, FSDPModule)


def gradient_sync(loss_model, accelerator, enabled: bool):
    """A context in which backward accumulates gradients locally (enabled=False) or reduces them."""
    if enabled:
        return contextlib.nullcontext()
    if is_sharded(loss_model):
        return _fsdp_no_sync(loss_model)
    return accelerator.no_sync(loss_model)


@contextlib.contextmanager
def _fsdp_no_sync(loss_model):
    loss_model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        loss_model.set_requires_gradient_sync(True)


@contextlib.contextmanager
def root_gathered(loss_model):
    """The root unit's parameters (embeddings, final norm, head) gathered, for code that calls the
    inner model directly (generation), which skips the root's own forward hook. The decoder
    layers gather theirs in their forward as always."""
    if not is_sharded(loss_model):
        yield
        return
    loss_model.unshard()
    try:
        yield
    finally:
        loss_model.reshard()


def to_float(x) -> float:
    """A float from a tensor that may be a DTensor (FSDP's gradient norm)."""
    return float(x.full_tensor() if hasattr(x, "full_tensor") else x)


def full_model_state(loss_model) -> dict | None:
    """The whole model's state dict, gathered on the main process (a collective: every process
    calls it); keys without the CompletionLoss prefix. None on the other processes.

    A tied parameter (the head tied to the embeddings) is kept once, under its first name, as a
    one-process save_pretrained writes it: gathered, its two names hold two separate tensors, which
    save_pretrained cannot recognise as one, so final/ would otherwise hold the head twice."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(loss_model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not state:
        return None
    tied = tied_names(loss_model)
    return {name.removeprefix("model."): tensor for name, tensor in state.items() if name not in tied}


def distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(ignore_frozen_params=True)


def tied_names(loss_model) -> dict[str, str]:
    """{second name: first name} of parameters that are one tensor (tied embeddings and head)."""
    first, tied = {}, {}
    for name, p in loss_model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            tied[name] = first[id(p)]
        else:
            first[id(p)] = name
    return tied


def _flatten(model_sd: dict, optim_sd: dict, tied: dict) -> tuple[dict, dict]:
    """{"model/<name>": tensor, "optim/<name>/<key>": tensor} and the non-tensor optimizer state
    (optimizer_state.split_optimizer_state, keyed by parameter name); a tied parameter is stored once,
    under its first name."""
    optim_tensors, meta = split_optimizer_state(optim_sd)
    tensors = {f"model/{name}": t for name, t in model_sd.items() if name not in tied}
    tensors.update({f"optim/{key}": t for key, t in optim_tensors.items()})
    return tensors, meta


def save_sharded(folder: Path, loss_model, optimizer) -> dict:
    """Every process writes its shards of the trainable parameters and the optimizer state into
    folder/sharded/ (a collective); returns the non-tensor optimizer state for optimizer.json."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(loss_model, optimizer, options=_options())
    tensors, meta = _flatten(model_sd, optim_sd, tied_names(loss_model))
    writer = HuggingFaceStorageWriter(str(folder / SHARDED_DIR), save_distributed=True,
                                      fqn_to_index_mapping=file_groups(tensors))
    dcp.save(tensors, storage_writer=writer, no_dist=not distributed())
    return meta


def file_groups(tensors: dict, budget: int = FILE_BYTES) -> dict[str, int]:
    """{name: file number}: consecutive tensors in files of about `budget` bytes (whole tensors,
    the same on every process). safetensors builds each file in memory before writing it, so one
    file per process would cost a copy of the whole shard at every checkpoint (measured: +0.9 GB
    per process on SmolLM2 full fine-tuning)."""
    groups, index, size = {}, 1, 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()  # a DTensor's numel is the whole tensor's
        if size and size + nbytes > budget:
            index, size = index + 1, 0
        groups[name] = index
        size += nbytes
    return groups


def load_sharded(path: Path, loss_model, optimizer) -> None:
    """Restore trainable parameters and optimizer state from path/sharded/ (written by any number
    of processes) into this process's shards, or into whole tensors without FSDP."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_sd, optim_sd = get_state_dict(loss_model, optimizer, options=_options())
    tied = tied_names(loss_model)
    tensors, _ = _flatten(model_sd, optim_sd, tied)
    saved = json.loads((path / "optimizer.json").read_text(encoding="utf-8"))
    try:
        dcp.load(tensors, storage_reader=HuggingFaceStorageReader(str(path / SHARDED_DIR)), no_dist=not distributed())
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ConfigError(f"{path}: the sharded checkpoint does not fit this model and method ({exc})") from None
    model_sd = {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}
    model_sd.update({name: model_sd[first] for name, first in tied.items() if first in model_sd})
    optim_tensors = {k.removeprefix("optim/"): v for k, v in tensors.items() if k.startswith("optim/")}
    set_state_dict(loss_model, optimizer, model_state_dict=model_sd,
                   optim_state_dict=join_optimizer_state(optim_tensors, saved, param_key=str), options=_options())
