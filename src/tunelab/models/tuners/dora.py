"""DoRA (Liu et al. 2024) through peft: LoRA with a learned magnitude per output feature.

Takes its options from `train.lora`. On mixture-of-experts models, peft's all-linear also adapts
the fused expert weights (3-D parameters), which DoRA cannot: that is refused with what to do.
"""

from tunelab.models.tuners.base import Method, peft_refusals
from tunelab.models.tuners.lora import MOE_HINT, lora_config


def apply(model, train_cfg, architecture, model_path):
    from peft import get_peft_model

    with peft_refusals("dora", model, {"ParamWrapper": MOE_HINT}):
        return get_peft_model(model, lora_config(train_cfg.lora, architecture, use_dora=True))


METHOD = Method("dora", apply, options=("lora",), peft=True, peft_type="LORA", half_frozen_weights=True)
