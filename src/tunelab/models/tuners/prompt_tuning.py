"""Prompt tuning (Lester et al. 2021) through peft: trained virtual-token embeddings before the input."""

from tunelab.models.tuners.base import VIRTUAL_TOKENS, Method, peft_refusals, peft_task_type


def apply(model, train_cfg, architecture, model_path):
    from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

    opts = train_cfg.prompt_tuning
    kwargs = {}
    if opts.init_text:
        kwargs = {"prompt_tuning_init": PromptTuningInit.TEXT, "prompt_tuning_init_text": opts.init_text,
                  "tokenizer_name_or_path": model_path}
    config = PromptTuningConfig(task_type=peft_task_type(architecture),
                                num_virtual_tokens=opts.num_virtual_tokens, **kwargs)
    with peft_refusals("prompt_tuning", model):
        return get_peft_model(model, config)


METHOD = Method("prompt_tuning", apply, options=("prompt_tuning",), peft=True, peft_type="PROMPT_TUNING",
                peft_forward=True, half_frozen_weights=True,
                unmergeable=VIRTUAL_TOKENS,
                regularization="virtual tokens have no starting weights to stay near")
