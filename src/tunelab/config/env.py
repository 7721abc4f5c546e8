"""Environment knobs: where tunelab caches things and whether it may touch the network."""

from __future__ import annotations

import os
from pathlib import Path


def tunelab_home() -> Path:
    """Cache root: $TUNELAB_HOME, default ~/.cache/tunelab."""
    home = os.environ.get("TUNELAB_HOME")
    path = Path(home).expanduser() if home else Path.home() / ".cache" / "tunelab"
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_offline() -> bool:
    """True when the user asked Hugging Face libraries to stay offline."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    return False
