"""LoRA (Hu et al. 2021) through peft: low-rank updates on the target linear layers."""

from tunelab.models.tuners import peft_task_type


def lora_config(opts, architecture, use_dora=False):
    from peft import LoraConfig

    return LoraConfig(
        task_type=peft_task_type(architecture),
        r=opts.r,
        lora_alpha=opts.alpha,
        lora_dropout=opts.dropout,
        target_modules=opts.target_modules,
        bias=opts.bias,
        modules_to_save=opts.modules_to_save,
        use_rslora=opts.use_rslora,
        use_dora=use_dora,
    )


def apply(model, train_cfg, architecture, model_path):
    from peft import get_peft_model

    return get_peft_model(model, lora_config(train_cfg.lora, architecture))
