"""bench/quality.py helpers that need no data: the exact McNemar test and the table."""

import numpy as np
import pytest

from bench import quality


def test_mcnemar_exact_p_values():
    a = np.array([True] * 10 + [False] * 5)
    b = np.array([False] * 10 + [False] * 5)
    assert quality.mcnemar_exact(a, b)["p_value"] == pytest.approx(2 / 2 ** 10)
    assert quality.mcnemar_exact(a, a)["p_value"] == 1.0
    same = quality.mcnemar_exact(np.array([True, False]), np.array([False, True]))
    assert same == {"only_first_right": 1, "only_second_right": 1, "p_value": 1.0}


def test_markdown_has_one_line_per_row():
    rows = [{"task": "digits", "what": "x", "shipped": "1", "candidate": "2", "target": ""}]
    assert quality.markdown(rows).splitlines()[-1] == "| digits | x | 1 | 2 |  |"
