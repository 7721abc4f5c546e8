"""(IA)^3 (Liu et al. 2022) through peft: learned rescaling of keys, values and FFN activations."""

from tunelab.models.tuners import peft_task_type


def apply(model, train_cfg, architecture, model_path):
    from peft import IA3Config, get_peft_model

    opts = train_cfg.ia3
    config = IA3Config(
        task_type=peft_task_type(architecture),
        target_modules=opts.target_modules,
        feedforward_modules=opts.feedforward_modules,
    )
    return get_peft_model(model, config)
