"""Full fine-tuning: every parameter is trained; a run's final/ is the whole model."""

from tunelab.models.tuners.base import Method


def apply(model, train_cfg, architecture, model_path):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


METHOD = Method("full", apply)
