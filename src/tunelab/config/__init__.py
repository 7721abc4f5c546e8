"""Configuration: YAML validated by pydantic, overrides, environment knobs."""

from tunelab.config.base import ConfigError, StrictModel, UserError
from tunelab.config.env import is_offline, tunelab_home
from tunelab.config.load import apply_overrides, load_config, write_resolved

__all__ = [
    "ConfigError",
    "StrictModel",
    "UserError",
    "apply_overrides",
    "is_offline",
    "load_config",
    "tunelab_home",
    "write_resolved",
]
