"""Models: resolve names to weights, load them, and attach fine-tuning methods."""

from tunelab.models.resolver import ALIASES, ModelResolutionError, list_aliases, resolve_model

__all__ = ["ALIASES", "ModelResolutionError", "list_aliases", "resolve_model"]
