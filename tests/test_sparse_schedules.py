import math

import pytest

from dstcl.errors import ConfigError
from dstcl.sparse import ConstantRate, CosineDecay, UpdateEvery, parse_growth


def test_cosine_decay_endpoints_and_midpoint():
    s = CosineDecay(initial=0.5, total_steps=1000, final=0.005)
    assert s(0) == pytest.approx(0.5)
    assert s(1000) == pytest.approx(0.005)
    assert s(5000) == pytest.approx(0.005)
    assert s(500) == pytest.approx((0.5 + 0.005) / 2)
    values = [s(i) for i in range(0, 1001, 50)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert s(250) == pytest.approx(0.005 + 0.5 * 0.495 * (1 + math.cos(math.pi / 4)))


def test_constant_and_update_every():
    assert ConstantRate(0.3)(123) == 0.3
    u = UpdateEvery(100)
    assert [s for s in range(0, 401) if u.due(s)] == [100, 200, 300, 400]
    assert UpdateEvery(100).count(399) == 3 and UpdateEvery(100).count(99) == 0
    static = UpdateEvery(0)  # no topology update at all: static sparse training
    assert not any(static.due(s) for s in range(1000)) and static.count(1000) == 0
    with pytest.raises(ConfigError):
        UpdateEvery(-1)
    with pytest.raises(ConfigError):
        CosineDecay(initial=1.5)


def test_growth_single_and_adaptive():
    assert parse_growth("gradient").describe(3) == ["gradient"] * 3
    plan = parse_growth("random@0-4,gradient").validate(10)
    assert plan.describe(10) == ["random"] * 5 + ["gradient"] * 5
    assert parse_growth("unfired@0, momentum@1-").describe(4) == ["unfired", "momentum", "momentum", "momentum"]
    assert parse_growth("random@0-1,gradient@2").describe(3) == ["random", "random", "gradient"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("magic", "unknown growth criterion 'magic'; valid: auto, gradient, momentum, random, unfired."),
        ("random@0-4,gradient@3-5", "overlap"),
        ("random,gradient", "two defaults"),
        ("random@4-2", "empty task range"),
        ("random@x", "cannot read"),
        ("", "growth must be"),
    ],
)
def test_growth_errors(spec, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_growth(spec)


def test_growth_schedule_beyond_sequence():
    with pytest.raises(ConfigError, match="names task 12, but the sequence has 10 tasks"):
        parse_growth("random@0-12,gradient").validate(10)
    with pytest.raises(ConfigError, match="no criterion for task 5"):
        parse_growth("random@0-4").validate(10)
