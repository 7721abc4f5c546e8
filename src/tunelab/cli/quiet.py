"""Keep third-party noise out of tunelab's terminal output; `tunelab --verbose ...` shows it again.

Progress bars of transformers ("Loading weights"), huggingface_hub, datasets and W&B, advisory
log lines, and deprecation warnings raised inside libraries (e.g. transformers warning about a
call peft makes) say nothing a tunelab user can act on. They are switched off here, at the source
(environment variables the libraries read when they are imported, warning filters by category and
by the library they come from), before any of those libraries is imported. tunelab's own lines
(`step ...`, `[eval] ...`, `tunelab: ...`) are unaffected.
"""

from __future__ import annotations

import os
import warnings

QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # also transformers' bars (read when transformers is imported)
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_SILENT": "true",
}
LIBRARIES = r"(transformers|peft|accelerate|torch|datasets|huggingface_hub|tokenizers|trl|mlflow|wandb|optuna" \
            r"|lm_eval|safetensors|matplotlib|gguf)(\..*)?"


def quiet_third_party(verbose: bool = False) -> None:
    if verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info")
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # Deprecation notices are for library authors; tunelab raises none of these categories itself.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=LIBRARIES)
    import logging

    for name in ("accelerate", "torch.distributed", "optuna", "mlflow", "datasets", "peft", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
