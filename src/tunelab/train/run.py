"""The run folder: resolved config, environment, metrics log and summary.

<output_dir>/<name>/
  config.resolved.yaml  env.json  metrics.jsonl  summary.json  checkpoints/step-N/  final/
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import platform
import resource
import subprocess
import sys
from pathlib import Path

from tunelab.config.base import ConfigError


def run_dir(cfg) -> Path:
    out = Path(cfg.output_dir)
    if not out.is_absolute():
        out = Path(cfg.config_dir) / out
    return out / cfg.name


def prepare_run_dir(cfg, resume: bool) -> Path:
    """Create the run folder; refuse to mix a new run into an old one unless resuming."""
    path = run_dir(cfg)
    if not resume and path.exists() and any(path.iterdir()):
        raise ConfigError(f"{path} already holds a run; pass --resume to continue it, or choose another "
                          f"name (name=... on the command line)")
    path.mkdir(parents=True, exist_ok=True)
    (path / "checkpoints").mkdir(exist_ok=True)
    return path


def git_commit(folder: str) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment(cfg, seed: int, world_size: int) -> dict:
    versions = {}
    for pkg in ("tunelab", "torch", "transformers", "peft", "accelerate", "safetensors", "numpy"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "seed": seed,
        "git_commit": git_commit(cfg.config_dir) or git_commit(str(Path(__file__).parent)),
        "processes": world_size,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "argv": sys.argv,
    }


def write_json(path: Path, data) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(data), indent=2), encoding="utf-8")
    tmp.replace(path)


def to_jsonable(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "__dict__"):
        return to_jsonable(vars(obj))
    return str(obj)


class MetricsLog:
    """metrics.jsonl: one JSON object per event, flushed at once so a killed run keeps its log."""

    def __init__(self, path: Path, enabled: bool):
        self.path = path
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """On resume: drop events the killed run logged after its last checkpoint."""
        if not self.enabled or not self.path.exists():
            return
        kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(self, event: dict) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(to_jsonable(event)) + "\n")


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
