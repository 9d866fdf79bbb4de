"""Looking ahead (`[scheduler] lookahead_s`): rooms kept for the classes of patients whom
only some rooms, or only a free room now, can serve: ESI 1-2 patients (`urgent`) and those
who need isolation. The classic optimal policy of loss systems with several classes is trunk
reservation (Miller 1969; Key 1990): keep the last free rooms for the most urgent class.
Here the number kept comes from the forecast, not from a weight: as many free rooms as
arrivals of the class are expected (rounded) before another room they may use is expected
to come free (`scheduler.forecast`), each hold at most `[scheduler] max_hold_s`.

Hard, with its holds declared: the kept rooms stand as *phantom* arrivals of their class
in the admissions, after the real ESI 1-2 arrivals and before everybody else (a real
isolation patient of this tick takes one of the isolation rooms kept). A patient of another
class is then referred beside a free room only while a `room.held` says it is kept, and
never a patient of the class it is kept for (the validator checks both).

The rooms kept are those the rules like best for a patient (the nearest the entrance): the
booking's tie-break gives them to the phantoms, which come last.
"""


def rooms_to_keep(expected: float) -> int:
    """As many rooms as arrivals are expected, rounded to the nearest (half up)."""
    return int(expected + 0.5)


def build(problem, model, tick_vars, weight=None):
    return 0  # the myopic model keeps no room
