"""Every example config in examples/ is valid as shipped: it loads, and a study's every system
(overrides applied, e.g. a regularisation section) is a valid config. No training: the examples
themselves take minutes (docs/experiments.md has their measured runs)."""

from pathlib import Path

import pytest

from tunelab.config import load_config

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_config_is_valid(path, tmp_path):
    from tunelab.experiments.study import check_study, study_systems, system_config

    cfg = load_config(path)
    if cfg.study is not None:
        check_study(cfg)
        systems = [system_config(cfg, name, overrides, tmp_path) for name, overrides in study_systems(cfg)]
        assert len(systems) == len(study_systems(cfg)) >= 1


def test_the_remedies_study_has_each_remedy():
    from tunelab.experiments.study import study_systems

    cfg = load_config(Path(EXAMPLES[0]).parent / "remedies_study.yaml")
    kinds = {name: (overrides.get("train.regularization") or {}).get("kind") for name, overrides in study_systems(cfg)}
    assert kinds == {"full": None, "full-l2sp": "l2sp", "full-ewc": "ewc"}
    assert cfg.study.interpolation.systems == ["full"] and cfg.seeds == [0, 1, 2]
