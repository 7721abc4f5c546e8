"""The pieces of the several-systems report that need no model: the Pareto front and the signs."""

from tunelab.evaluate.compare import better
from tunelab.report.plots import pareto_front


def test_pareto_front_keeps_the_points_no_other_beats_on_both():
    # (change on held-out tasks, gain on the tuned task): higher is better on both
    points = [(0.0, 0.30), (-0.10, 0.40), (-0.05, 0.20), (-0.20, 0.40), (0.02, 0.10)]
    assert pareto_front(points) == [0, 1, 4]  # (-0.05, 0.20) loses to (0.0, 0.30); (-0.20, 0.40) to (-0.10, 0.40)


def test_a_lower_is_better_metric_turns_into_an_improvement():
    perplexity_up = {"diff": 2.5, "ci": [1.0, 4.0], "p_value": 0.01, "n": 30, "higher_is_better": False}
    assert better(perplexity_up) == {"diff": -2.5, "ci": [-4.0, -1.0], "p_value": 0.01, "n": 30}
    accuracy_up = {"diff": 0.1, "ci": [0.02, 0.18], "p_value": 0.02, "n": 30, "higher_is_better": True}
    assert better(accuracy_up)["ci"] == [0.02, 0.18]
