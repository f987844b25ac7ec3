"""The intersection task's move plans: exact counts, facing swaps, one move per line per layer,
and nothing a model could read without counting (total crossings, each line's moves, the layers)
that depends on the answer."""

from collections import Counter

import numpy as np
import pytest

from generators import wiring
from linebench.tasks import get_task, resolve_params, ParamSpec


def replay(plan: wiring.Plan, placed, n):
    """Walk the laid-out moves in layer order with independent bookkeeping; return per-line move
    counts, pairwise swap counts and the total, checking every move is one level step and every
    swap's lines face each other across a band boundary."""
    order = list(plan.start_order)
    level = {line: 2 * r + plan.start_half[line] for r, line in enumerate(order)}
    moves = Counter()
    pairs = Counter()
    per_layer = Counter()
    for mv, layer in sorted(placed, key=lambda p: p[1]):
        for line, (frm, to) in zip(mv.lines, mv.levels):
            assert level[line] == frm, "a move starts where its line is"
            assert abs(to - frm) == 1
            level[line] = to
            moves[line] += 1
            per_layer[(line, layer)] += 1
        if len(mv.lines) == 2:
            x, y = mv.lines
            (fx, tx), (fy, ty) = mv.levels
            assert fx % 2 == 1 and fy == fx + 1 and tx == fy and ty == fx  # facing across a boundary, then swapped
            rx, ry = order.index(x), order.index(y)
            assert ry == rx + 1, "a swap is between neighbours"
            order[rx], order[ry] = y, x
            pairs[frozenset((x, y))] += 1
        else:
            (frm, to), = mv.levels
            assert frm // 2 == to // 2, "a feint stays in its band"
    assert max(per_layer.values()) == 1, "one move per line per layer"
    return moves, pairs, sum(pairs.values())


@pytest.mark.parametrize("seed", range(40))
def test_plans_have_the_drawn_counts(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 8))
    t = int(rng.integers(0, 6))
    total = t if n == 2 else t + int(rng.integers(0, 4))
    moves = [int(v) for v in rng.integers(t + 4, t + 7, n)] if n > 3 else [total + 3] * n
    plan = wiring.move_plan(rng, n, moves, t, total, (0, 1))
    assert plan is not None
    order = plan.start_order
    assert abs(order.index(0) - order.index(1)) == 1, "the queried lines start side by side"
    layers = int(rng.integers(0, 30))
    placed, count = wiring.schedule(plan, n, rng, layers)
    assert count >= layers and all(0 <= lay < count for _, lay in placed)
    done, pairs, swaps = replay(plan, placed, n)
    assert [done[i] for i in range(n)] == moves
    assert pairs[frozenset((0, 1))] == t and swaps == total


def test_total_question_plans():
    rng = np.random.default_rng(3)
    plan = wiring.move_plan(rng, 5, [6] * 5, 4, 0, None)
    placed, _ = wiring.schedule(plan, 5, rng)
    done, _, swaps = replay(plan, placed, 5)
    assert swaps == 4 and all(done[i] == 6 for i in range(5))


def test_impossible_plans_are_none_and_the_check_says_so():
    rng = np.random.default_rng(0)
    assert wiring.move_plan(rng, 2, [3, 3], 5, 5, (0, 1)) is None  # 5 crossings need 5 moves each
    assert wiring.shortfall([3], 4, [0, 5], [6], True) is not None
    assert wiring.shortfall([3], 9, [0, 5], [5, 6], True) is None


@pytest.mark.parametrize("level", ["easy", "medium", "hard", "ood"])
def test_level_settings_never_need_a_second_start(level):
    """A start the plan cannot finish from would be redrawn, and the redraw would depend on the
    answer: at the level settings every start must work."""
    task = get_task("intersection")
    k = resolve_params(task, level, ParamSpec(difficulty=level))["knobs"]
    rng = np.random.default_rng(1)
    lo_n, hi_n = k["lines"] if isinstance(k["lines"], list) else (k["lines"],) * 2
    for i in range(150):
        n = int(rng.integers(lo_n, hi_n + 1))
        t = int(rng.integers(k["count"][0], k["count"][1] + 1))
        total = t if n == 2 else int(rng.integers(k["crossings"][0], k["crossings"][1] + 1))
        moves = [int(v) for v in rng.integers(k["moves"][0], k["moves"][1] + 1, n)]
        assert wiring.move_plan(rng, n, moves, t, total, (0, 1)) is not None, (n, t, total, moves)


def test_layers_are_the_drawn_number_whatever_the_answer():
    """The number of layers sets the scale of every move; the scene draws it with the knobs (the
    medium level: moves' hi + 3..5 = 12..14) and a plan fills exactly that many, for the smallest
    and the largest answer alike, unless it needs more (rarely, at this level)."""
    rng = np.random.default_rng(5)
    for t in (0, 5):
        exact = 0
        for _ in range(200):
            plan = wiring.move_plan(rng, 3, [int(v) for v in rng.integers(8, 10, 3)], t, int(rng.integers(5, 7)), (0, 1))
            target = int(rng.integers(12, 15))
            count = wiring.schedule(plan, 3, rng, target)[1]
            assert count >= target
            exact += count == target
        assert exact >= 190, (t, exact)
