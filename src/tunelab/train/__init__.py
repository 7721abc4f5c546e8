"""Training: batching, loss, optimizers, checkpoints and the loop (`train(cfg, resume=False)`)."""

__all__ = ["train"]


def train(cfg, resume: bool = False, data=None, *, on_validation=None, handle_signals: bool = False):
    """Fine-tune per cfg; returns the run folder (tunelab.train.loop.train)."""
    from tunelab.train.loop import train as _train

    return _train(cfg, resume=resume, data=data, on_validation=on_validation, handle_signals=handle_signals)
