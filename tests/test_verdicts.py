"""Paired verdicts: Student's t computed here agrees with the tables; Holm corrects a family of comparisons."""

from __future__ import annotations

import math

import pytest

from dstcl.report.verdicts import holm, holm_verdicts, interval, paired_test, t_quantile, t_sf, verdict


@pytest.mark.parametrize("t, df, p", [(6.314, 1, 0.05), (2.920, 2, 0.05), (2.353, 3, 0.05), (1.812, 10, 0.05),
                                      (4.303, 2, 0.025), (0.0, 5, 0.5), (12.706, 1, 0.025)])
def test_t_tail_matches_the_tables(t, df, p):
    assert t_sf(t, df) == pytest.approx(p, abs=2e-4)
    assert t_sf(-t, df) == pytest.approx(1 - p, abs=2e-4)


def test_t_quantile_inverts_the_tail():
    assert t_quantile(0.975, 2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile(0.95, 2) == pytest.approx(2.920, abs=1e-3)


def test_verdicts_on_hand_made_differences():
    assert verdict(paired_test([4.1, 4.5, 3.2])) == "holds"
    assert verdict(paired_test([-4.1, -4.5, -3.2])) == "does not hold"
    assert verdict(paired_test([1.0, -1.2, 0.4])) == "inconclusive"
    assert verdict(paired_test([5.0])) == "inconclusive"  # one seed never decides
    test = paired_test([1.0, 1.0, 1.0])
    assert test.t == math.inf and verdict(test) == "holds"
    low, high = interval(paired_test([1.0, 2.0, 3.0]))
    assert (low, high) == pytest.approx((2 - 4.303 / math.sqrt(3), 2 + 4.303 / math.sqrt(3)), abs=1e-3)


def test_holm_rejects_step_down():
    assert holm([0.01, 0.04, 0.03]) == [True, False, False]  # 0.01 <= 0.05/3; then 0.03 > 0.05/2 stops
    assert holm([0.01, 0.02, 0.04]) == [True, True, True]  # 0.01 <= .0167, 0.02 <= .025, 0.04 <= .05
    weak = [1.0, 1.6, 0.6]  # t = 3.67, one-sided p = 0.033
    tests = [paired_test(d) for d in ([-3.0, -3.3, -2.9], weak, weak)]
    assert holm_verdicts(tests) == ["does not hold", "inconclusive", "inconclusive"]
    assert verdict(tests[1]) == "holds"  # significant alone, not once the family of three is corrected
