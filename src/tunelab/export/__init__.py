"""Export a finished run for use outside tunelab: adapter, merged model, GGUF, each with a model card.

Export comes after training (config -> data -> models -> train -> export): it reads a run folder
back (export/source.py) and writes a self-contained folder, all or nothing (export/run.py). One
module per thing: the adapter (adapter.py), the merged model (merged.py), the GGUF through
llama.cpp's converter (gguf.py), the model card (model_card.py). Nothing in train/ imports it.

    from tunelab.export import export_run
    export_run("runs/sst2-lora", merge=True)   # -> runs/sst2-lora/export-merged
"""

from tunelab.export.run import export_run
from tunelab.export.source import load_run_model

__all__ = ["export_run", "load_run_model"]
