"""The scheduler's rules, one module each.

A rule module has `build(problem, model, tick_vars, weight)`: it adds constraints to the
tick's CP-SAT model and returns its objective term to minimise (or 0). Hard rules are the
spec's (DESIGN section 2) and are always on; soft rules take their weight from `[rules]` in
`config.toml`, where 0 switches them off. `tie_break` ranks the optima of everything else.
"""

from rules import (
    acuity_order,
    free_rooms_fast,
    isolation,
    longest_wait_first,
    minimise_walking,
    no_idle_staff,
    one_room_one_patient,
    one_task_at_a_time,
    refer_only_when_full,
    right_role,
    skills,
    sla_breach,
    spare_doctors,
    spare_isolation_rooms,
    tie_break,
    urgency,
)

# Structural hard rules (right_role, skills, isolation) decide which variables exist.
HARD = (
    one_room_one_patient,
    refer_only_when_full,
    acuity_order,
    one_task_at_a_time,
    no_idle_staff,
    right_role,
    skills,
    isolation,
)
SOFT = (
    longest_wait_first,
    minimise_walking,
    free_rooms_fast,
    urgency,
    sla_breach,
    spare_isolation_rooms,
    spare_doctors,
)

__all__ = ["HARD", "SOFT", "tie_break"]
