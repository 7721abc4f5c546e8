"""Preference settings written the way TRL, LLaMA-Factory or axolotl name them get one error line
that names tunelab's key (train.preference.beta, train.objective, train.preference.dpo_loss), and
the config the hint describes loads."""

from __future__ import annotations

import pytest
import yaml

from tunelab.config import load_config
from tunelab.config.base import ConfigError


def error_of(train: dict, top: dict | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(data={"name": "x", "model": {"name": "m"}, "train": train, **(top or {})})
    message = str(err.value)
    assert "\n" not in message  # the CLI prints it as one line
    return message


@pytest.mark.parametrize("key, value, hint", [
    ("beta", 0.1, "did you mean 'preference.beta'?"),
    ("dpo_beta", 0.1, "did you mean 'preference.beta' (a common dpo_beta)?"),
    ("pref_beta", 0.1, "did you mean 'preference.beta' (LLaMA-Factory's pref_beta)?"),
    ("rl_beta", 0.1, "did you mean 'preference.beta' (axolotl's rl_beta)?"),
    ("orpo_alpha", 0.1, "did you mean 'preference.beta' (axolotl's orpo_alpha)?"),
    ("loss_type", "ipo", "did you mean 'objective: ipo' (TRL's loss_type: ipo)?"),
    ("loss_type", "KTO", "did you mean 'objective: kto' (TRL's loss_type: KTO)?"),
    # a DPO variant: the objective too, since ours defaults to sft
    ("loss_type", "hinge", "did you mean 'objective: dpo' with 'preference.dpo_loss: hinge' (TRL's loss_type: hinge)?"),
    ("loss_type", "robust", "did you mean 'objective: dpo' with 'preference.dpo_loss: robust' "
                            "(TRL's loss_type: robust)?"),
    # a loss tunelab does not have: where the choices are
    ("loss_type", "exo_pair", "did you mean 'objective' (TRL's loss_type)?"),
    ("pref_loss", "simpo", "did you mean 'objective: simpo' (LLaMA-Factory's pref_loss: simpo)?"),
    ("rl", "orpo", "did you mean 'objective: orpo' (axolotl's rl: orpo)?"),
    ("stage", "dpo", "did you mean 'objective: dpo' (LLaMA-Factory's stage: dpo)?"),
    ("dpo_loss", "hinge", "did you mean 'preference.dpo_loss'?"),
    ("simpo_gamma", 1.0, "did you mean 'preference.simpo_gamma'?"),
    ("kto_chosen_weight", 1.0, "did you mean 'preference.desirable_weight' (LLaMA-Factory's kto_chosen_weight)?"),
    ("max_prompt_length", 256, "did you mean 'data.max_length' (TRL's max_prompt_length)?"),
])
def test_a_preference_key_in_the_wrong_place_names_ours(key, value, hint):
    assert error_of({key: value}) == f"<config>: train: unknown key '{key}'; {hint}"


@pytest.mark.parametrize("top, hint", [
    ({"beta": 0.1}, "did you mean 'train.preference.beta'?"),
    ({"loss_type": "ipo"}, "did you mean 'train.objective: ipo' (TRL's loss_type: ipo)?"),
    ({"objective": "dpo"}, "did you mean 'train.objective'?"),
])
def test_at_the_top_level_the_whole_path(top, hint):
    key = next(iter(top))
    assert error_of({}, top) == f"<config>: unknown key '{key}'; {hint}"


def test_under_preference_the_objective_is_a_train_key():
    assert error_of({"preference": {"objective": "dpo"}}).endswith(
        "unknown key 'objective'; did you mean 'train.objective'?")


@pytest.mark.parametrize("key", ["cpo_alpha", "rpo_alpha", "ref_model", "reference_free", "precompute_ref_log_probs"])
def test_a_setting_tunelab_does_not_have_is_said_so_not_matched_to_another(key):
    """cpo_alpha is one letter from orpo_alpha: a fuzzy match would send it to beta."""
    message = error_of({key: 1})
    assert f"unknown key '{key}': " in message and "has no tunelab key" in message and "did you mean" not in message


@pytest.mark.parametrize("key, value, fixed", [
    ("beta", 0.2, {"preference": {"beta": 0.2}}),
    ("dpo_beta", 0.2, {"preference": {"beta": 0.2}}),
    ("loss_type", "ipo", {"objective": "ipo"}),
    ("loss_type", "hinge", {"objective": "dpo", "preference": {"dpo_loss": "hinge"}}),
    ("pref_loss", "orpo", {"objective": "orpo"}),
])
def test_the_config_the_hint_describes_loads(key, value, fixed):
    error_of({key: value})
    cfg = load_config(data={"name": "x", "model": {"name": "m"}, "train": fixed})
    if "objective" in fixed:
        assert cfg.train.objective == fixed["objective"]
    for k, v in fixed.get("preference", {}).items():
        assert getattr(cfg.train.preference, k) == v


def test_every_choice_hint_is_a_valid_setting():
    """Each value a CHOICES entry suggests is one the schema accepts, at the key it names."""
    from tunelab.config.hints import CHOICES

    for name, (_, by_value) in CHOICES.items():
        for value, targets in by_value.items():
            train: dict = {}
            for target in targets:
                path, _, choice = target.partition(": ")
                *parents, leaf = path.split(".")[1:]  # below train.
                node = train
                for p in parents:
                    node = node.setdefault(p, {})
                node[leaf] = choice
            load_config(data={"name": "x", "model": {"name": "m"}, "train": train})  # no error


def test_the_cli_prints_the_hint_as_one_line(tmp_path, capsys):
    from tunelab.cli.main import main

    config = tmp_path / "dpo.yaml"
    config.write_text(yaml.safe_dump({"name": "x", "model": {"name": "m"}, "train": {"objective": "dpo",
                                                                                    "beta": 0.1}}))
    assert main(["train", str(config)]) != 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"tunelab: error: {config}: train: unknown key 'beta'; did you mean 'preference.beta'?"]
