"""Soft, looking ahead (`[scheduler] lookahead_s`): what a decision is worth against the
forecast. A tick's plan for a role pairs its staff free now and those the forecast expects
free soon with its waiting tasks and those the forecast expects soon (`scheduler.lookahead`);
only the pairs of a member free now are carried out: a waiting task is dispatched, an
expected one makes a hold.

A pair costs what the rules say of it now (its walk and the like, and the task's worth,
the negative of its priority: waiting, urgency, targets), with two changes for a pair that
starts later: the task's worth decays linearly with the delay, to nothing at the role's
horizon (a task served at the horizon is as good as one not served in the plan), and an
expected task counts with its probability. So keeping a doctor free for an ESI 2 visit due
in 3 s is worth 180 s of waiting (urgency 60 per level) times 1 - 3/13.5 for a 13.5 s
horizon: 140 s, more than a fresh ESI 3 visit's 120 s, unless a nurse frees in time for it.
No weight of its own: the rules' weights, the forecast, the horizon.
"""

# The plan's costs are fractions of the rules' units: scaled by this to whole numbers.
SCALE = 1000


def decay(delay_ms: int, horizon_ms: int) -> float:
    """What is left of a task's worth when it is served `delay_ms` from now."""
    if delay_ms <= 0:
        return 1.0
    return max(0.0, 1.0 - delay_ms / horizon_ms)


def pair_cost(
    pair: float, worth: int, delay_ms: int, horizon_ms: int, probability: float = 1.0
) -> int:
    """The plan's cost of a pair, scaled: `pair` (its walk and the like) and `worth` (the
    task's part, the negative of its priority) in the rules' units."""
    return round(SCALE * probability * (pair + worth * decay(delay_ms, horizon_ms)))


def build(problem, model, tick_vars, weight=None):
    return 0  # the myopic model's tick has no plan: nothing to add
