"""Turn user-fixable errors into one clear line on stderr instead of a traceback."""

from __future__ import annotations

import os
import sys

from tunelab.config.base import ConfigError, UserError  # UserError re-exported: the CLI modules import it here


def _user_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [UserError, ConfigError, FileNotFoundError]
    try:  # the data and metrics packages define their own input errors
        from tunelab.data.errors import DataError

        types.append(DataError)
    except ImportError:
        pass
    try:
        from tunelab.metrics.errors import MetricInputError

        types.append(MetricInputError)
    except ImportError:
        pass
    return tuple(types)


def run_with_clean_errors(fn, args) -> int:
    """Run a command: user errors end in one line (exit 2); SIGINT / SIGTERM stop every phase
    cleanly (tunelab.signals) and end in one line, exit 130 / 143."""
    from tunelab.signals import Stopped, handling_signals, in_phase

    try:  # the phase a signal names: the command (eval, export...), or a training run's own phase
        with handling_signals(True), in_phase(getattr(fn, "__module__", "").rsplit(".", 1)[-1] or "command"):
            rc = fn(args)
        return 0 if rc is None else int(rc)
    except Stopped as exc:
        print(exc.line(), file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tunelab: interrupted", file=sys.stderr)
        return 130
    except _user_error_types() as exc:
        if os.environ.get("TUNELAB_DEBUG"):
            raise
        print(f"tunelab: error: {exc}", file=sys.stderr)
        return 2
