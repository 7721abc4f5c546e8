"""The whole experiment config: one section per pipeline stage, each in its own module."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, PrivateAttr, field_validator, model_validator

from tunelab.config.base import StrictModel, check_path_name
from tunelab.config.data import DataConfig
from tunelab.config.evaluate import EvalConfig, ForgettingConfig
from tunelab.config.experiments import ContinualConfig, SearchConfig, StageConfig, StudyConfig
from tunelab.config.hints import use_schema
from tunelab.config.model import ModelConfig
from tunelab.config.train import TrainConfig


class ExperimentConfig(StrictModel):
    name: str = "run"
    seed: int = 42
    # Train the same system once per seed; each seed is its own run folder
    # <output_dir>/<name>/seed-<s>/ (tunelab.experiments.seeds). The data split stays the one
    # `seed` gives: only the training seed (initialisation, data order, dropout) changes.
    seeds: list[Annotated[int, Field(strict=True, ge=0)]] | None = None
    # Run folders are created as <output_dir>/<name>/.
    output_dir: str = "runs"
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig | None = None
    # Held-out tasks scored before and after training (tunelab.evaluate.forgetting).
    forgetting: ForgettingConfig | None = None
    # Continual fine-tuning (tunelab.experiments.continual) and hyperparameter search.
    stages: list[StageConfig] | None = None
    continual: ContinualConfig | None = None
    search: SearchConfig | None = None
    # A trade-off study: several methods and learning rates on the same data (tunelab.experiments.study).
    study: StudyConfig | None = None

    # Folder of the YAML file: relative data paths resolve against it. Not part of the config.
    _config_dir: str = PrivateAttr(default=".")

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, value):
        return check_path_name(value, "run name")  # the run folder is <output_dir>/<name>

    @field_validator("seeds")
    @classmethod
    def _seeds_are_distinct(cls, value):
        if value is not None and not value:
            raise ValueError("give at least one seed, e.g. seeds: [0, 1, 2] (or remove the key for one run)")
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"each seed once: {value} lists a seed twice")
        return value

    @model_validator(mode="after")
    def _seeds_fit_the_experiment(self):
        if not self.seeds:
            return self
        if self.search is not None:
            raise ValueError("seeds: a search's trials are single runs; remove 'seeds:' (or 'search:')")
        if self.train.seed is not None:
            raise ValueError("seeds: each seed's run sets train.seed itself; remove train.seed")
        return self

    @property
    def config_dir(self) -> str:
        return self._config_dir

    @config_dir.setter
    def config_dir(self, value: str) -> None:
        self._config_dir = value


# The did-you-mean for an unknown key looks in every section (config/hints.py).
use_schema(ExperimentConfig)
