"""DoRA (Liu et al. 2024) through peft: LoRA with a learned magnitude per output feature.

Takes its options from `train.lora`.
"""

from tunelab.models.tuners.lora import lora_config


def apply(model, train_cfg, architecture, model_path):
    from peft import get_peft_model

    return get_peft_model(model, lora_config(train_cfg.lora, architecture, use_dora=True))
