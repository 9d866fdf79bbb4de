"""Soft: keep rooms able to isolate for the patients who need them. Booking a patient who
does not need isolation into such a room costs `weight` seconds of waiting, so they go there
only when that saves more (`[hospital] reserve_isolation_rooms` forbids it outright)."""

from rules.units import per_second, separable_build


def booking_cost(problem, arrival, room_id, weight):
    if arrival.isolation or room_id not in problem.isolation_rooms:
        return 0
    return per_second(1000, weight)


build = separable_build(booking_cost=booking_cost)
