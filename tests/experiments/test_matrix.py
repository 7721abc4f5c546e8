"""ACC / BWT / FWT on hand-computed numbers (GEM definitions, raw metric units)."""

import pytest

from tunelab.experiments.matrix import build_matrix, format_matrix, learned_at_from_stages, matrix_summary


def test_gem_three_tasks_known_numbers():
    # rows: base, after stage 1 (task a), 2 (task b), 3 (task c)
    scores = [
        [0.50, 0.40, 0.30],
        [0.90, 0.45, 0.35],
        [0.70, 0.85, 0.40],
        [0.60, 0.80, 0.95],
    ]
    s = matrix_summary(scores, ["a", "b", "c"], {"a": 1, "b": 2, "c": 3})
    assert s["ACC"] == pytest.approx((0.60 + 0.80 + 0.95) / 3)
    # BWT = mean(R[3][a]-R[1][a], R[3][b]-R[2][b]) = mean(-0.30, -0.05)
    assert s["BWT"] == pytest.approx(-0.175)
    # FWT = mean(R[1][b]-b_b, R[2][c]-b_c) = mean(0.05, 0.10)
    assert s["FWT"] == pytest.approx(0.075)
    assert s["per_task_backward"] == pytest.approx({"a": -0.30, "b": -0.05})
    assert s["held_out_change"] is None


def test_lower_is_better_flips_sign_so_negative_bwt_is_forgetting():
    # losses: task a learned at stage 1 (loss 1.0), goes back up to 1.5 after stage 2
    scores = [[3.0, 3.0], [1.0, 2.8], [1.5, 0.9]]
    s = matrix_summary(scores, ["a", "b"], {"a": 1, "b": 2}, higher_is_better=False)
    assert s["BWT"] == pytest.approx(-0.5)
    assert s["FWT"] == pytest.approx(0.2)  # loss on b fell 3.0 -> 2.8 before b was trained
    assert s["ACC"] == pytest.approx((1.5 + 0.9) / 2)


def test_held_out_tasks_and_multi_task_stages():
    learned = learned_at_from_stages([["a", "b"], ["c"], ["a"]])
    assert learned == {"a": 1, "b": 1, "c": 2}
    scores = [
        [0.1, 0.1, 0.1, 0.8],
        [0.9, 0.8, 0.2, 0.7],
        [0.5, 0.6, 0.9, 0.6],
        [0.95, 0.55, 0.7, 0.5],
    ]
    m = build_matrix(scores, ["a", "b", "c", "mmlu"], ["base", "s1", "s2", "s3"], learned, metric="acc")
    s = m.summary
    assert s["BWT"] == pytest.approx(((0.95 - 0.9) + (0.55 - 0.8) + (0.7 - 0.9)) / 3)
    assert s["FWT"] == pytest.approx(0.2 - 0.1)
    assert s["held_out_change"] == pytest.approx(0.5 - 0.8)
    text = format_matrix(m)
    assert "mmlu" in text and "BWT: -0.1333" in text


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="row 1"):
        matrix_summary([[0.1, 0.2], [0.3]], ["a", "b"], {"a": 1})
    with pytest.raises(ValueError, match="outside"):
        matrix_summary([[0.1], [0.2]], ["a"], {"a": 2})
    with pytest.raises(ValueError, match="at least one"):
        matrix_summary([[0.1]], ["a"], {})
