"""Models: resolve names to weights, load them, and attach fine-tuning methods."""

from tunelab.models.resolver import ALIASES, ModelResolutionError, list_aliases, resolve_model

__all__ = ["ALIASES", "ModelResolutionError", "list_aliases", "load_model", "resolve_model"]


def __getattr__(name):
    # load_model pulls in torch and transformers; import it only when asked for.
    if name == "load_model":
        from tunelab.models.load import load_model

        return load_model
    raise AttributeError(name)
