"""Hard: a visit to an ESI 1-2 patient needs a doctor; nurses see ESI 3-5, doctors anyone
(`[rules] skills`; with every patient ESI 3, the default, it changes nothing).

The rule is structural: a dispatch variable exists only for a pair allowed by
`TickProblem.may_do`; "no staff member idle while a task waits" counts only the tasks an idle
member may do."""


def build(problem, model, tick_vars, weight=None):
    return 0
