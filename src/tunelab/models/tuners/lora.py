"""LoRA (Hu et al. 2021) through peft: low-rank updates on the target linear layers."""

from tunelab.models.tuners.base import Method, peft_refusals, peft_task_type


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


# peft's all-linear also adapts the fused (3-D) expert weights of mixture-of-experts models, through a
# wrapper without dropout or DoRA: what to do when peft refuses one of those.
MOE_HINT = ("; on a mixture-of-experts model all-linear also adapts the fused expert weights, which take "
            "neither LoRA dropout nor DoRA: set train.lora.dropout: 0 and use method lora, or name the linear "
            "layers in train.lora.target_modules (e.g. [q_proj, k_proj, v_proj, o_proj])")


def apply(model, train_cfg, architecture, model_path):
    from peft import get_peft_model

    with peft_refusals("lora", model, {"ParamWrapper": MOE_HINT}):
        return get_peft_model(model, lora_config(train_cfg.lora, architecture))


METHOD = Method("lora", apply, options=("lora",), peft=True, peft_type="LORA", half_frozen_weights=True)
