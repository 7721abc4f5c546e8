"""Full fine-tuning: every parameter is trained."""


def apply(model, train_cfg, architecture, model_path):
    for p in model.parameters():
        p.requires_grad_(True)
    return model
