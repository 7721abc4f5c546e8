"""Training: batching, loss, optimizers, checkpoints and the loop (`train(cfg, resume=False)`)."""

__all__ = ["train"]


def train(cfg, resume: bool = False, data=None, *, on_validation=None, handle_signals: bool = False, report=None):
    """Fine-tune per cfg; returns the run folder (tunelab.train.loop.train). `report`: writes the
    run's report for the trackers (tunelab.report.write_report; train/ does not import report/)."""
    from tunelab.train.loop import train as _train

    return _train(cfg, resume=resume, data=data, on_validation=on_validation, handle_signals=handle_signals,
                  report=report)
