"""Run `tunelab ARGS...` with every batch made slow and named, so that a test can send a signal
inside a chosen phase (imported by no product code).

    python slow_phase.py PHASE ARGS...

Before each batch of data preparation, scoring, validation, each training step and each checkpoint
write, this prints
`slow: P` on stderr (P: the phase tunelab.signals names) and, in PHASE only, waits SLOW_S seconds:
a test waits for the line of the phase it wants, then signals. A signal ends the wait at once (as it would end
a batch's computation). The run's heartbeat (summary.json's time) beats every HEARTBEAT_S seconds
here instead of every 30, so that a test can kill a start and find its time recorded."""

from __future__ import annotations

import sys
import time

SLOW_S = 1.0
HEARTBEAT_S = 0.5


def slow(real):
    def wrapper(*args, **kwargs):
        from tunelab.signals import STATE

        print(f"slow: {STATE.phase}", file=sys.stderr, flush=True)
        if STATE.phase == sys.argv[1]:
            time.sleep(SLOW_S)
        return real(*args, **kwargs)

    return wrapper


def main() -> int:
    import tunelab.evaluate.generation as generation
    import tunelab.evaluate.loglikelihood as loglikelihood
    import tunelab.signals as signals
    import tunelab.train.checkpoint as checkpoint
    import tunelab.train.loop as loop
    import tunelab.train.run as run
    import tunelab.train.validate as validate
    from tunelab.cli.main import main as cli

    signals.check = slow(signals.check)  # data preparation imports it from tunelab.signals
    generation.check_stop = slow(generation.check_stop)
    loglikelihood.check_stop = slow(loglikelihood.check_stop)
    validate.check = slow(validate.check)
    loop.train_step = slow(loop.train_step)
    checkpoint.write_rng = slow(checkpoint.write_rng)  # the first write of every checkpoint (phase: saving)
    run.HEARTBEAT_S = HEARTBEAT_S
    return cli(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
