"""The one error type of tunelab.metrics: input that cannot be scored.

It derives from ValueError so plain Python callers can catch it as such; the CLI prints its
message (which names the file, line and field when there is one) without a traceback.
"""


class MetricInputError(ValueError):
    """Bad scoring input: malformed record, wrong type, unknown metric or option."""
