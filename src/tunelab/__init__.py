"""tunelab: fine-tune pre-trained LLMs on your own data and measure what it gained and what it cost.

The package is laid out as the pipeline it runs:
config -> data -> models -> train -> evaluate -> metrics -> report, with a thin cli on top.
"""

__version__ = "0.1.0"
