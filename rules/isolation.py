"""Hard: a patient who needs isolation goes only into a room able to isolate
(`[hospital] isolation_rooms`); with `reserve_isolation_rooms`, nobody else goes there. The
room then needs a terminal clean (task kind `clean_terminal`). "Referred only when no room is
free" becomes "no room free that this patient may use".

The rule is structural: a booking variable exists only for a pair allowed by
`TickProblem.may_book`."""


def build(problem, model, tick_vars, weight=None):
    return 0
