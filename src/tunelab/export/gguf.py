"""GGUF export (llama.cpp, Ollama, LM Studio) through llama.cpp's own converter.

Why llama.cpp's `convert_hf_to_gguf.py` and not a writer of our own on `gguf.GGUFWriter` +
`TensorNameMap`: a GGUF that llama.cpp runs correctly needs more than renamed tensors. Each
family has its own transforms (Llama/Mistral Q and K rows permuted to llama.cpp's RoPE layout,
Gemma's norm weights stored as 1 + w, fused or split projections), its own hyperparameter keys,
and the tokenizer's pre-tokenizer identified by hashing how it splits a reference text. The
converter is where llama.cpp keeps all of that, for every family it supports, in step with the
runtime; a home-made writer would be a second, untested copy of it. tunelab merges the adapter,
saves a float32 safetensors folder (config, weights, tokenizer with its chat template) and runs
the converter on it, so the weights are rounded once, to the requested type.

Where the converter comes from: llama.cpp publishes no Python package of it, but every
llama-cpp-python sdist on PyPI vendors llama.cpp's tree, the converter and its matching
`gguf-py` included (the converter imports that copy, not the `gguf` wheel tunelab depends on).
On first use tunelab downloads one pinned sdist through pip, checked against its sha256, and
keeps only the converter and gguf-py under TUNELAB_HOME/llama.cpp/ (no compiler, no build; pip
honours the user's index and proxy settings). `make setup` does this ahead of time so that tests
run offline. Set TUNELAB_LLAMA_CPP to a llama.cpp checkout (or its convert_hf_to_gguf.py) to use
another version. The converter runs in a subprocess of the same Python: it needs torch,
transformers and numpy (tunelab's own dependencies) and, for SentencePiece vocabularies (Llama 2,
Mistral v0.1, Gemma), `sentencepiece`: the `tunelab[gguf]` extra.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from tunelab.config.base import ConfigError, UserError
from tunelab.config.env import tunelab_home
from tunelab.files import write_text

GGUF_TYPES = ("f16", "bf16", "q8_0")
LLAMA_CPP_PYTHON = "0.3.36"  # its sdist vendors llama.cpp; the converter version tunelab is tested with
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
SCRIPT = "convert_hf_to_gguf.py"
ENV_VAR = "TUNELAB_LLAMA_CPP"


class ConverterMissing(UserError):
    """llama.cpp's converter is neither cached nor downloadable; the message says how to get it."""


def converter_dir() -> Path:
    return tunelab_home() / "llama.cpp" / f"llama-cpp-python-{LLAMA_CPP_PYTHON}"


def find_converter() -> Path | None:
    """The converter script: $TUNELAB_LLAMA_CPP, else the cached copy, else None."""
    chosen = os.environ.get(ENV_VAR)
    if chosen:
        path = Path(chosen).expanduser()
        script = path if path.is_file() else path / SCRIPT
        if not script.is_file():
            raise ConfigError(f"{ENV_VAR}={chosen}: no {SCRIPT} there (point it at a llama.cpp checkout)")
        return script
    script = converter_dir() / SCRIPT
    return script if script.is_file() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# What the converter reads beside itself: its model classes (conversion/), its own gguf package,
# chat templates some families borrow (models/templates/), and llama.cpp's MIT licence.
KEEP = (SCRIPT, "LICENSE", "conversion/", "gguf-py/gguf/", "models/templates/")


def _extract(sdist: Path, target: Path) -> None:
    """Only what the converter needs; the rest of llama.cpp's tree (C++ sources) stays out."""
    with tarfile.open(sdist) as tar:
        members = tar.getmembers()
        prefix = f"{members[0].name.split('/')[0]}/vendor/llama.cpp/"
        wanted = [m for m in members if m.name.startswith(prefix) and (m.isfile() or m.isdir())
                  and any(m.name[len(prefix):] == k or (k.endswith("/") and m.name[len(prefix):].startswith(k))
                          for k in KEEP)]
        if not any(m.name == prefix + SCRIPT for m in wanted):
            raise ConverterMissing(f"{sdist.name} holds no vendor/llama.cpp/{SCRIPT}")
        for m in wanted:
            m.name = m.name[len(prefix):]
        # The "data" filter refuses links and absolute paths out of the archive (Python >= 3.10.12).
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(target, members=wanted, **kwargs)


def fetch_converter(say=print) -> Path:
    """Download the pinned llama-cpp-python sdist with pip (hash-checked) and keep the converter."""
    target = converter_dir()
    if (target / SCRIPT).is_file():
        return target / SCRIPT
    say(f"tunelab: fetching llama.cpp's GGUF converter once: llama-cpp-python=={LLAMA_CPP_PYTHON} sdist "
        f"from PyPI (pip download, no build) into {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        requirement = Path(tmp) / "requirements.txt"
        requirement.write_text(f"llama-cpp-python=={LLAMA_CPP_PYTHON} --hash=sha256:{SDIST_SHA256}\n")
        # --no-binary for this package only: its build dependencies may still come as wheels.
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                               "llama-cpp-python", "--require-hashes", "-r", str(requirement), "-d", tmp],
                              capture_output=True, text=True)
        sdists = sorted(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not sdists:
            tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-2:])
            raise ConverterMissing(
                f"GGUF export needs llama.cpp's converter ({SCRIPT}) and pip could not download it: {tail}. "
                f"Run once with network access (pip install 'tunelab[gguf]' brings what it imports), or set "
                f"{ENV_VAR} to a llama.cpp checkout")
        if _sha256(sdists[0]) != SDIST_SHA256:  # pip checked it too; this guards a changed pip
            raise ConverterMissing(f"{sdists[0].name}: sha256 mismatch, refusing to run it")
        staged = Path(tmp) / "staged"
        _extract(sdists[0], staged)
        if (target / SCRIPT).is_file():  # another process fetched it meanwhile
            return target / SCRIPT
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staged, target)  # all or nothing: an interrupted fetch leaves no half converter
    return target / SCRIPT


def converter(say=print) -> Path:
    return find_converter() or fetch_converter(say)


def convert_folder(model_dir: Path, outfile: Path, gguf_type: str, name: str | None = None, say=print) -> Path:
    """Run llama.cpp's converter on a safetensors model folder; return the GGUF file.

    The file appears only when the converter succeeded (written beside it, then renamed)."""
    if gguf_type not in GGUF_TYPES:
        raise ConfigError(f"--gguf-type {gguf_type!r}: choose from {', '.join(GGUF_TYPES)}")
    script = converter(say)
    partial = outfile.with_name(f".{outfile.name}.partial")
    cmd = [sys.executable, str(script), str(model_dir), "--outfile", str(partial), "--outtype", gguf_type]
    if name:
        cmd += ["--model-name", name]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # a local folder: nothing to fetch
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "Error" in line or "error" in line), lines[-1] if lines
                      else f"exit code {done.returncode}")
        raise UserError(f"llama.cpp's converter ({script}) could not convert this model to GGUF: {reason.strip()}")
    os.replace(partial, outfile)
    return outfile


def describe(path: Path) -> dict:
    """What the written file says about itself (read back with the gguf package): architecture,
    tensor count, chat template present, vocabulary size."""
    from gguf import GGUFReader

    reader = GGUFReader(path)

    def text(key):
        field = reader.fields.get(key)
        return bytes(field.parts[field.data[0]]).decode("utf-8") if field is not None else None

    tokens = reader.fields.get("tokenizer.ggml.tokens")
    return {"architecture": text("general.architecture"), "tensors": len(reader.tensors),
            "chat_template": text("tokenizer.chat_template"),
            "vocab_size": len(tokens.data) if tokens is not None else 0,
            "pre_tokenizer": text("tokenizer.ggml.pre")}


def sentencepiece_model(model_cfg) -> Path | None:
    """The base model's SentencePiece `tokenizer.model`, when it has one. transformers 5 saves
    tokenizer.json only, but llama.cpp's converter reads SentencePiece vocabularies (Gemma, Gemma 2,
    Llama 2, Mistral v0.1) from that file, as it would in the original model folder."""
    from tunelab.models.resolver import resolve_model

    base = resolve_model(model_cfg.name)
    if Path(base).is_dir():
        path = Path(base) / "tokenizer.model"
        return path if path.is_file() else None
    try:  # a hub id: from the cache, or downloaded unless offline
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(base, "tokenizer.model", revision=model_cfg.revision))
    except Exception:  # noqa: BLE001 -- no such file in the repo, or offline: the converter says what it lacks
        return None


def write_gguf(model, tokenizer, out: Path, cfg, gguf_type: str) -> Path:
    """The merged float32 model, saved to a scratch folder inside `out`, converted by llama.cpp's
    converter to `<name>-<TYPE>.gguf`, plus an Ollama Modelfile; the scratch folder is removed."""
    scratch = out / ".merged-float32"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        model.save_pretrained(scratch, safe_serialization=True)
        tokenizer.save_pretrained(scratch)
        spm = sentencepiece_model(cfg.model)
        if spm is not None and not (scratch / "tokenizer.model").exists():
            shutil.copyfile(spm, scratch / "tokenizer.model")
        path = convert_folder(scratch, out / f"{cfg.name}-{gguf_type.upper()}.gguf", gguf_type, name=cfg.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write_text(out / "Modelfile", f"FROM ./{path.name}\n")
    return path


if __name__ == "__main__":  # `python -m tunelab.export.gguf`: fetch the converter ahead of time (make setup)
    print(converter())
