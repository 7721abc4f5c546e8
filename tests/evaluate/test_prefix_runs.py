"""shared_prefix_runs: which questions run a shared prefix once (the choice, not the arithmetic,
which tests/models/test_families.py checks against direct log-likelihoods on every family)."""

from __future__ import annotations

from tunelab.evaluate.loglikelihood import shared_prefix_runs


def test_five_shot_subjects_each_share_their_own_long_prefix_not_the_short_common_one():
    header = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]  # "The following are ... about", every subject
    subjects = {s: header + [100 + s] + [1000 * s + k for k in range(400)] for s in range(3)}  # + 5 shots
    contexts = [subjects[s] + [50_000 + 10 * s + q, 7] for s in range(3) for q in range(10)]
    runs = shared_prefix_runs(contexts)
    assert sorted((prefix, sorted(members)) for prefix, members in runs) == \
        [(412, list(range(10 * s, 10 * s + 10))) for s in range(3)]


def test_zero_shot_descriptions_form_runs_and_the_rest_runs_alone():
    described = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 50 + q, 60 + q] for q in range(12)]
    unrelated = [[200 + q, 3, 4] for q in range(5)]
    few = [[9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 70 + q] for q in range(3)]  # shared, but too few questions
    runs = shared_prefix_runs(described + unrelated + few)
    assert runs[0] == (9, list(range(12)))
    assert runs[1] == (0, list(range(12, 20)))


def test_every_index_once_and_a_deep_chain_of_nested_prefixes_is_no_recursion():
    chain = [list(range(n)) for n in range(1, 3001)]  # each context extends the previous one
    runs = shared_prefix_runs(chain)
    assert sorted(i for _, members in runs for i in members) == list(range(3000))
    for prefix, members in runs:
        assert all(len(chain[i]) > prefix and chain[i][:prefix] == chain[members[0]][:prefix] for i in members)
    assert shared_prefix_runs([]) == []
