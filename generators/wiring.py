"""Wiring diagrams on a half-band lattice: the move plan behind the intersection task's scenes.

Lines live in horizontal bands of a frame, one line per band (its *rank*); inside its band a line
sits at one of two *levels*, the lower or the upper half (level = 2 * rank + half). A line only
ever changes level by one step, in a *move* of one fixed shape:

- a *swap* takes two lines that face each other across the boundary of their bands (the lower one
  in its upper half, the upper one in its lower half) to the other side: one crossing, exactly;
- a *feint* takes one line to the other half of its own band: it crosses nothing.

Both are the same step (half a band, drawn alike), so a line's shape (how often and how far it
zigzags) says nothing about how many of its moves were crossings. `move_plan` finds the swaps, in
which every line makes at most the number of moves it was given, the queried pair swaps exactly `t`
times and all lines swap `total` times; `schedule` lays the swaps out in layers (u-slots) and turns
every line's remaining moves into feints. Pure functions of plain data; the only randomness is the
generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from linebench import detmath as dm


@dataclass(frozen=True)
class Move:
    lines: tuple[int, ...]  # one line (feint) or two (swap: the one moving up first)
    levels: tuple[tuple[int, int], ...]  # (from, to) level of each line


@dataclass(frozen=True)
class Plan:
    start_order: tuple[int, ...]  # rank -> line at the start
    start_half: tuple[int, ...]  # line -> 0 (lower half of its band) or 1 (upper half) at the start
    swaps: tuple[Move, ...]  # in order
    flips: tuple[tuple[int, ...], ...]  # per line, per swap of it: 1 if it must feint (an odd number of times) before it
    feints: tuple[int, ...]  # per line: its feints in all (its moves minus its swaps)


def move_plan(
    rng: np.random.Generator, n: int, moves: list[int], t: int, total: int, pair: tuple[int, int] | None
) -> Plan | None:
    """Swaps in which line i makes at most `moves[i]` moves (counting the feints it needs to face
    its partners), the lines of `pair` swap exactly `t` times and `total` swaps happen in all
    (`pair` None: `t` swaps of any lines, `total` ignored). The start (order of the lines, half of
    each) is uniform and drawn first, so it does not depend on `t`. None if no plan exists from it.

    A depth-first search over adjacent swaps in a random order: pair swaps with the odds of the
    pair swaps still to place, other swaps weighted towards lines with moves to spare. A swap costs
    a line one move, or two when it must first feint to face its partner (moving up needs the upper
    half, moving down the lower half). States that cannot finish are pruned, failed ones remembered."""
    a, b = pair if pair is not None else (-1, -1)
    rp, ro = (t, total - t) if pair is not None else (0, t)
    order = [int(v) for v in rng.permutation(n)]
    if pair is not None:  # the queried lines start side by side (whatever `t` is): nothing to bring together
        rest = [v for v in order if v not in (a, b)]
        at = int(rng.integers(n - 1))
        order = rest[:at] + ([a, b] if rng.random() < 0.5 else [b, a]) + rest[at:]
    start_half = [int(v) for v in rng.integers(0, 2, n)]
    start_order = tuple(order)
    half = list(start_half)  # each line's half before its next swap
    cost = [0] * n
    swaps: list[int] = []  # lower rank of each swap
    failed: set = set()

    def finishable(rp: int, ro: int) -> bool:
        if sum(m - c for m, c in zip(moves, cost)) < 2 * (rp + ro):
            return False
        if rp:
            ra, rb = order.index(a), order.index(b)
            if abs(ra - rb) - 1 > ro or moves[a] - cost[a] < rp or moves[b] - cost[b] < rp:
                return False
        return True

    def search(rp: int, ro: int) -> bool:
        if rp == 0 and ro == 0:
            return True
        key = (tuple(order), tuple(half), tuple(cost), rp)
        if key in failed or not finishable(rp, ro):
            return False
        cand, weight = [], []
        for p in range(n - 1):
            x, y = order[p], order[p + 1]  # x moves up, y moves down
            cx, cy = 1 + (half[x] != 1), 1 + (half[y] != 0)
            if cost[x] + cx > moves[x] or cost[y] + cy > moves[y]:
                continue
            if {x, y} == {a, b}:
                if rp:
                    cand.append((p, True, cx, cy))
                    weight.append(rp)
            elif ro:
                cand.append((p, False, cx, cy))
                weight.append(ro * (moves[x] - cost[x]) * (moves[y] - cost[y]))
        if cand:
            # A weighted random order: an exponential race (candidate i finishes at E_i / w_i, E_i ~
            # Exp(1)) orders like the Gumbel-max keys log(w_i) + G_i, with one log per candidate.
            finish = dm.exponential(rng, len(cand)) / np.asarray(weight, dtype=np.float64)
            for i in np.argsort(finish, kind="stable"):
                p, is_pair, cx, cy = cand[i]
                x, y = order[p], order[p + 1]
                saved = (half[x], half[y])
                order[p], order[p + 1] = y, x
                half[x], half[y] = 0, 1
                cost[x] += cx
                cost[y] += cy
                swaps.append(p)
                if search(rp - is_pair, ro - (not is_pair)):
                    return True
                swaps.pop()
                cost[x] -= cx
                cost[y] -= cy
                half[x], half[y] = saved
                order[p], order[p + 1] = x, y
        failed.add(key)
        return False

    if not search(rp, ro):
        return None
    order = list(start_order)
    half = list(start_half)
    flips: list[list[int]] = [[] for _ in range(n)]
    out: list[Move] = []
    for p in swaps:
        x, y = order[p], order[p + 1]
        flips[x].append(int(half[x] != 1))
        flips[y].append(int(half[y] != 0))
        out.append(Move((x, y), ((2 * p + 1, 2 * p + 2), (2 * p + 2, 2 * p + 1))))
        order[p], order[p + 1] = y, x
        half[x], half[y] = 0, 1
    n_swaps = [len(f) for f in flips]
    return Plan(start_order, tuple(start_half), tuple(out), tuple(tuple(f) for f in flips), tuple(m - s for m, s in zip(moves, n_swaps)))


def shortfall(lines: list[int], moves: int, counts: list[int], totals: list[int], pair_question: bool, starts: int = 12) -> str | None:
    """None if `move_plan` finds a plan with `moves` moves for every line in each of these cases
    (lines x answer x total, each from `starts` starts drawn from a fixed seed), else the first
    case that failed, in words. A check of knob values before generation, not a proof."""
    rng = np.random.default_rng(12345)
    for n in lines:
        for t in counts:
            for total in totals if pair_question and n >= 3 else [t]:
                for _ in range(starts):
                    if move_plan(rng, n, [moves] * n, t, max(total, t), (0, 1) if pair_question else None) is None:
                        return f"{n} lines, answer {t}, {max(total, t)} crossings in all found no plan"
    return None


def schedule(plan: Plan, n: int, rng: np.random.Generator, layers: int = 0, go: float = 1.0) -> tuple[list[tuple[Move, int]], int]:
    """Lay the plan out in layers (u-slots): every move with its layer, and the number of layers.

    Layer by layer, as a simulation: a swap whose two lines face each other and have no earlier
    swap left goes ahead with probability `go` (so crossings spread over the frame instead of
    bunching up at its start); every line not swapping feints when it must turn to face its next
    partner, and otherwise spends its spare feints at a rate that spreads them over the layers left,
    keeping enough for the turns its later swaps need. Each line makes one move per layer at most.

    With `layers`, the result is stretched to that many layers (empty layers at random places) when
    it needs fewer, so that the number of layers, which sets the scale of every move, does not
    depend on how the plan happened to chain its moves."""
    m = len(plan.swaps)
    queue: list[list[int]] = [[] for _ in range(n)]
    for e, mv in enumerate(plan.swaps):
        for x in mv.lines:
            queue[x].append(e)
    starts_at = [dict(zip(mv.lines, (lv[0] for lv in mv.levels))) for mv in plan.swaps]  # swap -> line -> level it leaves
    head = [0] * n
    level = [0] * n
    for r, line in enumerate(plan.start_order):
        level[line] = 2 * r + plan.start_half[line]
    feints = list(plan.feints)
    # turns still needed after each line's next swap (the flips the plan counts for its later swaps)
    later = [sum(plan.flips[x][1:]) for x in range(n)]
    out: list[tuple[Move, int]] = []
    done, layer = 0, 0

    def next_swap(x: int) -> int | None:
        return queue[x][head[x]] if head[x] < len(queue[x]) else None

    def faces(x: int, e: int | None) -> bool:  # (e: x's next swap)
        return e is not None and level[x] == starts_at[e][x]

    while done < m or any(feints):
        moved: set[int] = set()
        ready = []  # the swaps that are next for both their lines, both facing, in plan order
        if done < m:
            nxt = [next_swap(x) for x in range(n)]
            ready = [e for e in sorted({e for e in nxt if e is not None})
                     if all(nxt[x] == e and faces(x, e) for x in plan.swaps[e].lines)]
        for e in ready:
            if rng.random() < go or len(ready) == 1 and not any(feints):
                mv = plan.swaps[e]
                for x, (_, to) in zip(mv.lines, mv.levels):
                    level[x] = to
                    head[x] += 1
                    later[x] = sum(plan.flips[x][head[x] + 1:])
                    moved.add(x)
                out.append((mv, layer))
                done += 1
        busiest = max(f + len(queue[x]) - head[x] for x, f in enumerate(feints))
        for x in range(n):
            if x in moved or not feints[x]:
                continue
            e = next_swap(x)
            must_turn = e is not None and not faces(x, e)
            need_after = (0 if must_turn else (1 if e is not None else 0)) + later[x]
            if feints[x] - 1 < need_after:
                continue
            spare = feints[x] - (int(must_turn) + later[x])
            if must_turn or rng.random() < min(1.0, spare / max(1, busiest)):
                lv = level[x]
                to = lv + 1 if lv % 2 == 0 else lv - 1  # to the other half of its band
                out.append((Move((x,), ((lv, to),)), layer))
                level[x] = to
                feints[x] -= 1
        layer += 1
    if layers > layer:
        keep = np.sort(rng.choice(layers, layer, replace=False))  # an increasing map into the wider range
        out = [(mv, int(keep[lay])) for mv, lay in out]
        layer = layers
    return out, layer
