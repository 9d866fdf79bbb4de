"""Hard: when arrivals compete for too few rooms, the more urgent are admitted first (ESI 1
before 2 ...), and among equally urgent the earlier: a patient is never referred while one
after it in that order takes a room it could have used (`TickProblem.admitted`)."""


def build(problem, model, tick_vars, weight=None):
    ranked = sorted(
        range(len(problem.arrivals)),
        key=lambda n: (problem.arrivals[n].acuity, problem.arrivals[n].arrived_ms, n),
    )
    for position, first in enumerate(ranked):
        before = problem.arrivals[first]
        admitted = sum(tick_vars.for_patient(before.patient_id))
        for later in ranked[position + 1 :]:
            after = problem.arrivals[later]
            for room_id in problem.free_rooms:
                pair = (after.patient_id, room_id)
                if pair in tick_vars.book and problem.may_book(before, room_id):
                    model.add(tick_vars.book[pair] <= admitted)
    return 0
