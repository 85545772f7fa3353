"""Window: reset-aware rate, least-squares fit against a naive computation, thinning
and pruning bounds, numerical stability over long runs."""

from __future__ import annotations

import math
import random

import pytest

from collector.rules.window import Window

T0 = 1_700_000_000_000


def naive_fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(fitted value at the last point, slope) by the textbook formulas."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    slope = sum((t - mean_t) * (y - mean_y) for t, y in points) / sum(
        (t - mean_t) ** 2 for t, _ in points
    )
    return mean_y + slope * (points[-1][0] - mean_t), slope


def test_rate_of_a_steady_counter() -> None:
    window = Window(600)
    for second in range(0, 601, 15):
        window.add(T0 + second * 1000, 1000 + 2.5 * second)
    assert window.rate() == pytest.approx(2.5)


def test_rate_across_resets() -> None:
    window = Window(600)
    readings = [(0, 500), (60, 560), (120, 20), (180, 80), (240, 5), (300, 65)]
    for second, value in readings:
        window.add(T0 + second * 1000, value)
    # increases: 60, 20 (reset), 60, 5 (reset), 60
    assert window.rate() == pytest.approx(205 / 300)


def test_rate_and_fit_need_half_a_window() -> None:
    window = Window(600)
    window.add(T0, 1)
    assert (window.rate(), window.fit(), window.ready()) == (None, None, False)
    window.add(T0 + 299_000, 2)
    assert window.rate() is None
    window.add(T0 + 300_000, 3)
    assert window.rate() == pytest.approx(2 / 300)


def test_fit_matches_the_textbook_formula() -> None:
    rng = random.Random(7)
    window = Window(3600)
    points: list[tuple[float, float]] = []
    for second in range(0, 3 * 3600, 30):
        value = 0.4 + second * 1e-5 + rng.uniform(-0.01, 0.01)
        window.add(T0 + second * 1000, value)
        points.append((second, value))
    kept = [(t, y) for t, y in points if t >= points[-1][0] - 3600]
    fitted = window.fit()
    assert fitted is not None
    expected = naive_fit(kept)
    assert fitted[0] == pytest.approx(expected[0], rel=1e-9)
    assert fitted[1] == pytest.approx(expected[1], rel=1e-6)


def test_fit_stays_accurate_over_weeks() -> None:
    window = Window(6 * 3600)
    for second in range(0, 21 * 86400, 15):
        window.add(T0 + second * 1000, 1e12 + 1000.0 * math.sin(second / 5000) + second * 0.5)
    fitted = window.fit()
    assert fitted is not None
    last = 21 * 86400 - 15
    # recompute over the window's own points: the slope is ~0.5/s plus the sine's trend
    assert fitted[0] == pytest.approx(1e12 + 1000 * math.sin(last / 5000) + last * 0.5, rel=1e-9)
    assert 0.0 < fitted[1] < 1.0


def test_points_are_thinned_and_pruned() -> None:
    window = Window(3600, max_points=64)
    for second in range(0, 4 * 3600):  # one point per second
        window.add(T0 + second * 1000, float(second))
    assert len(window) <= 2 * 64 + 2
    assert window.span() <= 3600
    assert window.span() >= 3600 - 2 * 3600 / 64
    assert window.latest() == 4 * 3600 - 1
    assert window.rate() == pytest.approx(1.0)  # the increase survives thinning exactly


def test_old_and_duplicate_points_are_ignored() -> None:
    window = Window(600)
    window.add(T0 + 60_000, 10)
    window.add(T0 + 60_000, 99)
    window.add(T0, 99)
    assert (len(window), window.latest(), window.last_ms) == (1, 10, T0 + 60_000)


def test_a_long_gap_leaves_only_the_new_point() -> None:
    window = Window(600)
    for second in range(0, 601, 60):
        window.add(T0 + second * 1000, second)
    window.add(T0 + 86_400_000, 5)
    assert (len(window), window.span(), window.rate()) == (1, 0.0, None)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Window(0)
