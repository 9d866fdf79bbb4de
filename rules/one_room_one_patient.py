"""Hard: a room holds at most one patient, a patient is booked into at most one room, and
only a free room (clean and empty) can be booked: booking variables exist for free rooms only."""


def build(problem, model, tick_vars, weight=None):
    for arrival in problem.arrivals:
        model.add_at_most_one(tick_vars.for_patient(arrival.patient_id))
    for room_id in problem.free_rooms:
        model.add_at_most_one(tick_vars.for_room(room_id))
    return 0
