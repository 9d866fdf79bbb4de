"""Hard, looking ahead (`[scheduler] lookahead_s`): a staff member or room may be held back
for what the forecast expects, but only by a declared hold, `staff.held` {staff_id, reason,
until_s} or `room.held` {room_id, reserved_for, reason, until_s}. A held resource counts as
busy for "no staff member idle while a task they may do waits" and "referred only when no
room they may use is free" until its hold ends or it is used; a hold lasts at most
`[scheduler] max_hold_s`, and a resource whose hold ran out unused is not held again until
it has been used: nothing is kept idle for longer than that in a row.

Structural: the plan offers a hold only to a free member or room that may be held
(`Lookahead.may_hold_staff`, `may_hold_rooms`), for an expected task due within
`max_hold_s` (or within a live hold); the validator checks each hold.
"""


def may_hold_until(lookahead, staff_id: str, until_ms: int, now_ms: int) -> bool:
    """Whether `staff_id` may be held (or stay held) until `until_ms`."""
    if staff_id not in lookahead.may_hold_staff or until_ms <= now_ms:
        return False
    live = lookahead.held_staff.get(staff_id)
    if live is not None:  # a live hold is not extended
        return until_ms <= live
    return until_ms - now_ms <= lookahead.max_hold_ms


def build(problem, model, tick_vars, weight=None):
    return 0  # the myopic model holds nothing
