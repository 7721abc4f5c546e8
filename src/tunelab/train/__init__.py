"""Training: batching, loss, optimizers, checkpoints and the loop (`train(cfg, resume=False)`)."""

__all__ = ["train"]


def train(cfg, resume: bool = False, data=None):
    from tunelab.train.loop import train as _train

    return _train(cfg, resume=resume, data=data)
