"""Prefix tuning (Li & Liang 2021) through peft: trained key/value prefixes in every layer."""

from tunelab.models.tuners import peft_task_type


def apply(model, train_cfg, architecture, model_path):
    from peft import PrefixTuningConfig, get_peft_model

    opts = train_cfg.prefix_tuning
    config = PrefixTuningConfig(task_type=peft_task_type(architecture),
                                num_virtual_tokens=opts.num_virtual_tokens,
                                prefix_projection=opts.prefix_projection)
    return get_peft_model(model, config)
