"""Configuration: YAML validated by pydantic, overrides, environment knobs."""

from tunelab.config.base import ConfigError, StrictModel, UserError
from tunelab.config.env import is_offline, tunelab_home
from tunelab.config.load import apply_overrides, load_config, write_resolved
from tunelab.config.schema import ExperimentConfig  # defining it registers the did-you-mean's tree (config/hints.py)

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "StrictModel",
    "UserError",
    "apply_overrides",
    "is_offline",
    "load_config",
    "tunelab_home",
    "write_resolved",
]
