"""The clinical rules (DESIGN section 7), one test group each, as tests/unit/test_rules.py does
for the prototype's: a small hand-built `TickProblem` where the rule shapes the solution of
the full CP-SAT model (`scheduler.full_model.TickVars` + the rules), and its twin — a forced
violation is INFEASIBLE for a hard rule, the preference flips for a soft rule when its weight
is 0 or the data flips — then the same problem through `CpSatPolicy`, `FullModelPolicy` and
(for the hard rules, which it follows too) `GreedyPolicy`.

Then what lives outside the tick's model: the roster of shifts and breaks, staff going off
and on duty, terminal cleans after an isolation patient and escalations past a target wait,
through the real `Scheduler` (its Auditor checking every tick).
"""

from __future__ import annotations

import pytest
from ortools.sat.python import cp_model

from rules import (
    acuity_order,
    isolation,
    longest_wait_first,
    one_room_one_patient,
    refer_only_when_full,
    skills,
    sla_breach,
    urgency,
)
from scheduler import events as ev
from scheduler.config import Config, ConfigError, RulesConfig
from scheduler.demand import Demand
from scheduler.engine import Scheduler
from scheduler.full_model import FullModelPolicy
from scheduler.layout import ENTRANCE, ROLE_OF_KIND
from scheduler.policies import CpSatPolicy, GreedyPolicy
from scheduler.problem import Arrival, FreeStaff, OpenTask, TickProblem
from scheduler.shifts import Roster, RosterError
from scheduler.simulation import completion
from tests.unit.test_rules import Model

NOW = 10_000
# Only the rule under test among the soft rules (tie-break on, so answers are unique).
NO_SOFT = dict(
    longest_wait_first=0.0, minimise_walking=0.0, free_rooms_fast=0.0, urgency=0.0, sla_breach=0.0
)


# --- building problems ------------------------------------------------------------------------


def task(key, kind, room="A1", patient=None, created=0, acuity=3):
    return OpenTask(
        key, kind, ROLE_OF_KIND[kind], room, patient or f"patient-{key}", created, acuity
    )


def arrival_task(arrival: Arrival):
    return OpenTask(
        f"arrival:{arrival.patient_id}",
        "escort_in",
        "porter",
        None,
        arrival.patient_id,
        arrival.arrived_ms,
        arrival.acuity,
    )


def staff(staff_id, role=None, location=ENTRANCE):
    role = (
        role
        or {"porter": "porter", "nurse": "medical", "doctor": "medical", "cleaner": "cleaner"}[
            staff_id.rsplit("-", 1)[0]
        ]
    )
    return FreeStaff(staff_id, role, location)


def problem(arrivals=(), free_rooms=(), tasks=(), staff=(), now_ms=NOW, **clinical):
    """A problem with no walking anywhere; `clinical`: isolation_rooms, reserve_isolation_rooms,
    skills, sla_ms."""
    tasks, staff = tuple(tasks), tuple(staff)
    walking = {(t.key, s.staff_id): 0 for t in tasks for s in staff if t.role == s.role}
    if "isolation_rooms" in clinical:
        clinical["isolation_rooms"] = frozenset(clinical["isolation_rooms"])
    return TickProblem(
        now_ms,
        tuple(arrivals),
        tuple(free_rooms),
        tasks,
        staff,
        walking,
        {r: 0 for r in free_rooms},
        **clinical,
    )


def policies(weights: RulesConfig | None = None, greedy: bool = True):
    found = [FullModelPolicy(weights), CpSatPolicy(weights)]
    return found + [GreedyPolicy()] if greedy else found


def all_book(m: Model):
    return sum(m.vars.book.values())


# --- hard: acuity_order -----------------------------------------------------------------------


class TestAcuityOrder:
    # p-early (ESI 4) came first, p-urgent (ESI 1) after; one room for the two.
    EARLY = Arrival("p-early", 1_000, acuity=4)
    URGENT = Arrival("p-urgent", 9_000, acuity=1)

    def arrivals_problem(self, *arrivals, rooms=("A1",), **clinical):
        return problem(
            arrivals, rooms, [arrival_task(a) for a in arrivals], [staff("porter-1")], **clinical
        )

    def test_the_more_urgent_is_admitted_even_when_the_objective_prefers_the_earlier(self):
        p = self.arrivals_problem(self.EARLY, self.URGENT)
        m = Model(p).hard()
        # an objective that rewards admitting p-early
        status, sol = m.solve(-10 * m.vars.book["p-early", "A1"])
        assert status == cp_model.OPTIMAL
        assert sol.bookings == {"p-urgent": "A1"}
        assert p.admitted() == (self.URGENT,)

    @pytest.mark.parametrize(
        "weights", [RulesConfig(), RulesConfig(longest_wait_first=1000, urgency=0.0)]
    )
    def test_every_policy_admits_the_more_urgent(self, weights):
        p = self.arrivals_problem(self.EARLY, self.URGENT)
        for policy in policies(weights):
            solution = policy.solve(p)
            assert solution.bookings == {"p-urgent": "A1"}, policy.name
            assert solution.dispatches == {"arrival:p-urgent": "porter-1"}, policy.name

    def test_equally_urgent_the_earlier_is_admitted(self):
        late = Arrival("p-late", 9_000, acuity=2)
        first = Arrival("p-first", 1_000, acuity=2)
        p = self.arrivals_problem(late, first)
        for policy in policies():
            assert policy.solve(p).bookings == {"p-first": "A1"}, policy.name

    def test_twin_admitting_the_less_urgent_is_infeasible(self):
        p = self.arrivals_problem(self.EARLY, self.URGENT)
        m = Model(p).rule(one_room_one_patient).rule(refer_only_when_full).rule(acuity_order)
        m.fix("book", "p-early", "A1")
        assert m.solve()[0] == cp_model.INFEASIBLE

    def test_twin_without_the_rule_the_less_urgent_could_take_the_room(self):
        p = self.arrivals_problem(self.EARLY, self.URGENT)
        m = Model(p).rule(one_room_one_patient).rule(refer_only_when_full)
        m.fix("book", "p-early", "A1")
        assert m.solve()[0] == cp_model.OPTIMAL

    def test_an_urgent_patient_who_cannot_use_the_room_does_not_block_it(self):
        # p-urgent needs isolation and A1 cannot isolate: p-early takes A1, p-urgent is
        # referred, and no rule is broken.
        urgent = Arrival("p-urgent", 9_000, acuity=1, isolation=True)
        p = self.arrivals_problem(self.EARLY, urgent, isolation_rooms={"B1"})
        assert p.admitted() == (self.EARLY,)
        m = Model(p).hard().fix("book", "p-early", "A1")
        assert m.solve()[0] == cp_model.OPTIMAL
        for policy in policies():
            assert policy.solve(p).bookings == {"p-early": "A1"}, policy.name

    def test_the_urgent_take_the_rooms_they_may_use_the_rest_fill_the_others(self):
        # Rooms A1 (isolates) and A2. p-early (ESI 4) and p-urgent (ESI 1) both plain, p-iso
        # (ESI 2) needs isolation: p-iso must get A1, so only one plain patient fits A2: the
        # urgent one.
        iso = Arrival("p-iso", 5_000, acuity=2, isolation=True)
        p = self.arrivals_problem(
            self.EARLY, self.URGENT, iso, rooms=("A1", "A2"), isolation_rooms={"A1"}
        )
        assert {a.patient_id for a in p.admitted()} == {"p-urgent", "p-iso"}
        for policy in policies():
            assert policy.solve(p).bookings == {"p-urgent": "A2", "p-iso": "A1"}, policy.name


# --- hard: skills -----------------------------------------------------------------------------


class TestSkills:
    URGENT = task("u", "visit", "A1", created=5_000, acuity=2)
    ROUTINE = task("r", "visit", "A2", created=0, acuity=4)

    def test_a_visit_to_an_esi_1_2_patient_goes_to_the_doctor(self):
        p = problem(
            tasks=[self.URGENT, self.ROUTINE],
            staff=[staff("nurse-1"), staff("doctor-1")],
            skills=True,
        )
        m = Model(p).hard()
        assert ("u", "nurse-1") not in m.vars.dispatch
        assert m.solve()[1].dispatches == {"u": "doctor-1", "r": "nurse-1"}
        for policy in policies():
            assert policy.solve(p).dispatches == {"u": "doctor-1", "r": "nurse-1"}, policy.name

    def test_doctors_see_anyone_and_nurses_esi_3_to_5(self):
        p = problem(skills=True)
        for acuity in (1, 2, 3, 4, 5):
            visit = task("v", "visit", acuity=acuity)
            assert p.may_do(visit, staff("doctor-1"))
            assert p.may_do(visit, staff("nurse-1")) is (acuity >= 3)
        # other kinds of task are nobody's skill: escorts of ESI 1 patients to any porter
        assert p.may_do(task("e", "escort_in", acuity=1), staff("porter-1"))

    def test_with_only_a_nurse_free_the_urgent_visit_waits_and_the_nurse_may_stay_idle(self):
        p = problem(tasks=[self.URGENT], staff=[staff("nurse-1")], skills=True)
        assert p.dispatches_due("medical") == 0
        m = Model(p).hard()
        assert m.solve()[0] == cp_model.OPTIMAL
        for policy in policies():
            assert policy.solve(p).dispatches == {}, policy.name

    def test_twin_an_urgent_visit_given_to_a_nurse_is_infeasible(self):
        p = problem(tasks=[self.URGENT], staff=[staff("nurse-1")], skills=True)
        m = Model(p).hard()
        with pytest.raises(KeyError):  # no variable for the pair at all
            m.fix("dispatch", "u", "nurse-1")
        m.model.add(sum(m.vars.for_task("u")) == 1)  # the visit done now: by whom?
        assert m.solve()[0] == cp_model.INFEASIBLE

    def test_twin_without_skills_the_nurse_sees_the_urgent_patient(self):
        p = problem(tasks=[self.URGENT], staff=[staff("nurse-1")], skills=False)
        assert p.dispatches_due("medical") == 1
        for policy in policies():
            assert policy.solve(p).dispatches == {"u": "nurse-1"}, policy.name

    def test_twin_the_doctor_on_a_routine_visit_while_an_urgent_one_waits_is_infeasible(self):
        # No idle staff while a task they may do waits: the nurse can only take the routine
        # visit, so the doctor must take the urgent one; both dispatched.
        p = problem(
            tasks=[self.URGENT, self.ROUTINE],
            staff=[staff("nurse-1"), staff("doctor-1")],
            skills=True,
        )
        assert p.dispatches_due("medical") == 2
        m = Model(p).hard().fix("dispatch", "r", "doctor-1")
        assert m.solve()[0] == cp_model.INFEASIBLE
        # without skills the same choice is fine: the nurse takes the urgent visit
        m = Model(
            problem(tasks=[self.URGENT, self.ROUTINE], staff=[staff("nurse-1"), staff("doctor-1")])
        ).hard()
        assert m.fix("dispatch", "r", "doctor-1").solve()[1].dispatches == {
            "r": "doctor-1",
            "u": "nurse-1",
        }

    def test_a_config_with_esi_1_2_patients_and_no_doctor_is_refused(self):
        # Found by this file: it was accepted, and every ESI 1-2 patient then stayed in their
        # room for ever (an hour of the default hospital: 96% referred).
        urgent_mix = {"acuity_mix": [0.1, 0.2, 0.4, 0.2, 0.1]}
        with pytest.raises(
            ConfigError,
            match="staff.doctors: must be at least 1 when arrivals.acuity_mix has ESI 1-2 patients",
        ):
            Config().replace(staff={"doctors": 0}, arrivals=urgent_mix)
        # fine without the skills rule, or without urgent patients, or with a doctor
        Config().replace(staff={"doctors": 0}, arrivals=urgent_mix, rules={"skills": False})
        Config().replace(staff={"doctors": 0}, arrivals={"acuity_mix": [0, 0, 1, 1, 1]})
        Config().replace(arrivals=urgent_mix)

    def test_two_urgent_visits_one_doctor_one_nurse_one_dispatched(self):
        urgent_2 = task("u2", "visit", "A3", created=1_000, acuity=1)
        p = problem(
            tasks=[self.URGENT, urgent_2], staff=[staff("nurse-1"), staff("doctor-1")], skills=True
        )
        assert p.dispatches_due("medical") == 1
        for policy in policies():
            solution = policy.solve(p)
            assert list(solution.dispatches.values()) == ["doctor-1"], policy.name
        # the rule module itself is structural: it adds nothing to the model
        assert skills.build(p, cp_model.CpModel(), None) == 0


# --- hard: isolation --------------------------------------------------------------------------


class TestIsolation:
    ISO = Arrival("p-iso", 0, acuity=3, isolation=True)
    PLAIN = Arrival("p-plain", 0)

    def test_an_isolation_patient_goes_only_into_a_room_able_to_isolate(self):
        p = problem([self.ISO], ("A1", "B1"), isolation_rooms={"B1"})
        m = Model(p).hard()
        assert set(m.vars.book) == {("p-iso", "B1")}
        assert m.solve()[1].bookings == {"p-iso": "B1"}
        for policy in policies():
            assert policy.solve(p).bookings == {"p-iso": "B1"}, policy.name

    def test_twin_an_isolation_patient_in_a_plain_room_is_impossible(self):
        p = problem([self.ISO], ("A1",), isolation_rooms={"B1"})
        m = Model(p).hard()
        with pytest.raises(KeyError):
            m.fix("book", "p-iso", "A1")
        m.model.add(all_book(m) == 1)
        assert m.solve()[0] == cp_model.INFEASIBLE
        # so the patient is referred, though A1 is free: no room free that they may use
        assert p.admissions_due() == 0
        for policy in policies():
            assert policy.solve(p).bookings == {}, policy.name

    def test_both_admitted_when_each_has_a_room_it_may_use(self):
        p = problem([self.PLAIN, self.ISO], ("B1", "A1"), isolation_rooms={"B1"})
        for policy in policies():
            assert policy.solve(p).bookings == {"p-iso": "B1", "p-plain": "A1"}, policy.name

    def test_isolation_rooms_kept_for_isolation_patients_when_reserved(self):
        kept = problem([self.PLAIN], ("B1",), isolation_rooms={"B1"}, reserve_isolation_rooms=True)
        assert not kept.may_book(self.PLAIN, "B1")
        assert Model(kept).hard().vars.book == {}
        for policy in policies():
            assert policy.solve(kept).bookings == {}, policy.name

    def test_twin_not_reserved_a_plain_patient_may_take_an_isolation_room(self):
        shared = problem([self.PLAIN], ("B1",), isolation_rooms={"B1"})
        for policy in policies():
            assert policy.solve(shared).bookings == {"p-plain": "B1"}, policy.name

    def test_the_rule_module_is_structural(self):
        p = problem([self.ISO], ("A1", "B1"), isolation_rooms={"B1"})
        assert isolation.build(p, cp_model.CpModel(), None) == 0


# --- soft: urgency ----------------------------------------------------------------------------


class TestUrgency:
    # One porter; an ESI 4 patient waiting 10 s, an ESI 1 patient waiting 5 s.
    def tasks_problem(self, old_acuity=4, new_acuity=1):
        return problem(
            tasks=[
                task("old", "escort_out", "A1", created=0, acuity=old_acuity),
                task("new", "escort_out", "A2", created=5_000, acuity=new_acuity),
            ],
            staff=[staff("porter-1")],
        )

    def chosen(self, p, urgency_weight, wait_weight=1.0):
        m = Model(p).hard().rule(longest_wait_first, wait_weight).rule(urgency, urgency_weight)
        status, sol = m.solve()
        assert status == cp_model.OPTIMAL
        return sol.dispatches

    def test_the_more_urgent_goes_first_though_it_waited_less(self):
        assert self.chosen(self.tasks_problem(), 60.0) == {"new": "porter-1"}
        weights = RulesConfig(**{**NO_SOFT, "longest_wait_first": 1.0, "urgency": 60.0})
        for policy in policies(weights):
            assert policy.solve(self.tasks_problem()).dispatches == {"new": "porter-1"}

    def test_twin_weight_0_the_longest_wait_goes_first(self):
        assert self.chosen(self.tasks_problem(), 0.0) == {"old": "porter-1"}
        weights = RulesConfig(**{**NO_SOFT, "longest_wait_first": 1.0})
        for policy in policies(weights, greedy=False):
            assert policy.solve(self.tasks_problem()).dispatches == {"old": "porter-1"}

    def test_twin_acuities_swapped_the_preference_flips(self):
        swapped = self.tasks_problem(old_acuity=1, new_acuity=4)
        assert self.chosen(swapped, 60.0) == {"old": "porter-1"}

    def test_weight_is_seconds_of_waiting_per_esi_level(self):
        # 3 levels apart, 5 s of waiting apart: urgency 1 s a level is not enough, 2 s is.
        assert self.chosen(self.tasks_problem(), 1.0) == {"old": "porter-1"}
        assert self.chosen(self.tasks_problem(), 2.0) == {"new": "porter-1"}

    def test_greedy_serves_by_urgency_first(self):
        assert GreedyPolicy().solve(self.tasks_problem()).dispatches == {"new": "porter-1"}


# --- soft: sla_breach -------------------------------------------------------------------------


class TestSlaBreach:
    # One cleaner; a routine clean waiting 8 s of its 30 s target, a terminal clean waiting
    # 5 s of its 6 s target: the terminal clean is nearer its deadline.
    TARGETS = {("clean", False): 30_000, ("clean_terminal", False): 6_000}

    def cleans_problem(self, targets=None):
        targets = self.TARGETS if targets is None else targets
        return problem(
            tasks=[
                task("plain", "clean", "A1", created=2_000),
                task("terminal", "clean_terminal", "A2", created=5_000),
            ],
            staff=[staff("cleaner-1")],
            sla_ms=targets,
        )

    def chosen(self, p, breach_weight):
        m = Model(p).hard().rule(longest_wait_first, 1.0).rule(sla_breach, breach_weight)
        status, sol = m.solve()
        assert status == cp_model.OPTIMAL
        return sol.dispatches

    def test_the_task_nearest_its_deadline_goes_first(self):
        assert self.chosen(self.cleans_problem(), 10.0) == {"terminal": "cleaner-1"}
        weights = RulesConfig(**{**NO_SOFT, "longest_wait_first": 1.0, "sla_breach": 10.0})
        for policy in policies(weights, greedy=False):
            assert policy.solve(self.cleans_problem()).dispatches == {"terminal": "cleaner-1"}

    def test_twin_weight_0_the_longest_wait_goes_first(self):
        assert self.chosen(self.cleans_problem(), 0.0) == {"plain": "cleaner-1"}

    def test_twin_no_target_no_preference(self):
        assert self.chosen(self.cleans_problem(targets={}), 10.0) == {"plain": "cleaner-1"}

    def test_a_task_past_its_target_weighs_as_one_at_its_deadline(self):
        # Both past their targets: neither is pushed further; the longer wait goes first.
        both_late = {("clean", False): 1_000, ("clean_terminal", False): 1_000}
        assert self.chosen(self.cleans_problem(both_late), 10.0) == {"plain": "cleaner-1"}
        # One at its deadline, one far from it: the one at its deadline goes first.
        one_due = {("clean", False): 60_000, ("clean_terminal", False): 5_000}
        assert self.chosen(self.cleans_problem(one_due), 10.0) == {"terminal": "cleaner-1"}

    def test_esi_1_2_patients_have_their_own_target(self):
        # One doctor; a routine ESI 3 visit waiting 10 s (target 60 s), an ESI 2 visit
        # waiting 4 s of its urgent target of 5 s.
        targets = {("visit", False): 60_000, ("visit", True): 5_000}
        p = problem(
            tasks=[
                task("routine", "visit", created=0),
                task("urgent", "visit", "A2", created=6_000, acuity=2),
            ],
            staff=[staff("doctor-1")],
            sla_ms=targets,
            skills=True,
        )
        assert self.chosen(p, 10.0) == {"urgent": "doctor-1"}
        assert self.chosen(p, 0.0) == {"routine": "doctor-1"}
        # The same target for both (as `[sla]` gives when no urgent one is set): the routine
        # visit, waiting longer, is nearer its deadline.
        same = {("visit", False): 60_000, ("visit", True): 60_000}
        p2 = problem(tasks=p.tasks, staff=p.staff, sla_ms=same, skills=True)
        assert self.chosen(p2, 10.0) == {"routine": "doctor-1"}


# --- shifts: the roster ------------------------------------------------------------------------

STAFF = {"porter-1", "porter-2", "nurse-1", "doctor-1", "cleaner-1"}
H = 3_600_000
M = 60_000


def roster(*entries, cycle_s=86_400.0):
    return Roster(entries, cycle_s, STAFF)


class TestRoster:
    def test_a_day_shift(self):
        r = roster("porter-1 08:00-16:00")
        assert [r.on_duty("porter-1", t) for t in (0, 8 * H - 1, 8 * H, 16 * H - 1, 16 * H)] == [
            False,
            False,
            True,
            True,
            False,
        ]

    def test_staff_without_an_entry_are_always_on_duty(self):
        r = roster("porter-1 08:00-16:00")
        assert all(r.on_duty("porter-2", t) for t in (0, 3 * H, 23 * H))

    def test_seconds_and_the_day_repeating(self):
        r = roster("nurse-1 08:00:30-16:00:15")
        assert not r.on_duty("nurse-1", 8 * H + 29_999)
        assert r.on_duty("nurse-1", 8 * H + 30_000)
        assert not r.on_duty("nurse-1", 16 * H + 15_000)
        day = 24 * H
        assert r.on_duty("nurse-1", 3 * day + 12 * H) and not r.on_duty("nurse-1", 3 * day)

    def test_a_shift_across_midnight(self):
        r = roster("cleaner-1 22:00-06:00")
        assert [
            r.on_duty("cleaner-1", t)
            for t in (21 * H + 59 * M, 22 * H, 23 * H + 59 * M, 0, 5 * H + 59 * M, 6 * H, 12 * H)
        ] == [False, True, True, True, True, False, False]

    def test_breaks(self):
        r = roster("doctor-1 08:00-16:00 break 12:00-12:30 break 14:00-14:15")
        assert [
            r.on_duty("doctor-1", t)
            for t in (
                12 * H - 1,
                12 * H,
                12 * H + 29 * M,
                12 * H + 30 * M,
                14 * H + 10 * M,
                14 * H + 15 * M,
            )
        ] == [True, False, False, True, False, True]
        assert r.shifts["doctor-1"].breaks == ((12 * H, 12 * H + 30 * M), (14 * H, 14 * H + 15 * M))

    def test_a_break_across_midnight_of_a_night_shift(self):
        r = roster("porter-2 20:00-04:00 break 23:45-00:15")
        assert r.on_duty("porter-2", 23 * H + 44 * M)
        assert not r.on_duty("porter-2", 23 * H + 50 * M)
        assert not r.on_duty("porter-2", 10 * M)
        assert r.on_duty("porter-2", 15 * M)

    def test_a_short_cycle(self):
        r = roster("porter-1 00:00:00-00:00:10", cycle_s=30)
        assert [r.on_duty("porter-1", s * 1000) for s in (0, 9, 10, 29, 30, 39, 40)] == [
            True,
            True,
            False,
            False,
            True,
            True,
            False,
        ]

    @pytest.mark.parametrize(
        "entry, words",
        [
            ("porter-1", ["expected 'STAFF-ID FROM-TO"]),
            ("porter-1 08:00", ["expected FROM-TO"]),
            ("porter-1 8-16", ["'8'", "not a time of day"]),
            ("porter-1 08:00-25:00", ["'25:00'", "not a time of day"]),
            ("porter-1 08:60-16:00", ["'08:60'"]),
            ("porter-1 08:00:61-16:00", ["'08:00:61'"]),
            ("porter-9 08:00-16:00", ["no staff member porter-9"]),
            ("porter-1 08:00-16:00 lunch 12:00-13:00", ["expected 'break FROM-TO'", "'lunch'"]),
            ("porter-1 08:00-16:00 break", ["expected 'STAFF-ID FROM-TO"]),
            ("porter-1 08:00-16:00 break 12-13", ["'12'"]),
        ],
    )
    def test_a_bad_entry_is_named(self, entry, words):
        with pytest.raises(RosterError) as info:
            roster("nurse-1 08:00-16:00", entry)
        message = str(info.value)
        assert repr(entry) in message, message
        for word in words:
            assert word in message, message

    @pytest.mark.parametrize(
        "entry, words",
        [
            ("porter-1 07:00-07:00", ["shift 07:00-07:00 holds no time on duty"]),
            ("porter-1 07:00-19:00 break 20:00-20:30", ["break 20:00-20:30 is not within"]),
            ("porter-1 07:00-19:00 break 18:30-19:30", ["break 18:30-19:30 is not within"]),
            ("porter-1 22:00-06:00 break 12:00-12:30", ["shift 22:00-06:00"]),
            ("porter-1 22:00-06:00 break 21:00-23:00", ["break 21:00-23:00 is not within"]),
            ("porter-1 08:00-16:00 break 15:00-09:00", ["break 15:00-09:00 is not within"]),
            ("porter-1 08:00-16:00 break 12:00-12:00", ["break 12:00-12:00 lasts no time"]),
        ],
    )
    def test_a_shift_never_on_duty_or_a_break_off_its_shift_is_named(self, entry, words):
        with pytest.raises(RosterError) as info:
            roster(entry)
        message = str(info.value)
        assert repr(entry) in message, message
        for word in words:
            assert word in message, message

    @pytest.mark.parametrize(
        "entry",
        [
            "porter-1 22:00-06:00 break 23:00-01:00",
            "porter-1 22:00-06:00 break 05:00-05:30",
            "porter-1 07:00-19:00 break 07:00-07:30 break 18:30-19:00",
            "porter-1 00:00-24:00 break 23:30-00:30",
        ],
    )
    def test_breaks_within_their_shift_at_its_edges_or_across_midnight(self, entry):
        assert roster(entry).shifts["porter-1"].breaks

    def test_two_entries_for_one_member(self):
        with pytest.raises(RosterError, match="porter-1 has two entries"):
            roster("porter-1 08:00-16:00", "porter-1 16:00-23:00")

    def test_a_time_past_the_cycle(self):
        with pytest.raises(RosterError, match="past the cycle of 3600 s"):
            roster("porter-1 00:00-02:00", cycle_s=3600)

    def test_the_config_names_the_key_and_the_entry(self):
        with pytest.raises(
            ConfigError,
            match=r"shifts.roster: 'porter-3 08:00-16:00': no "
            r"staff member porter-3",
        ):
            Config().replace(shifts={"roster": ["porter-3 08:00-16:00"]})


# --- through the Scheduler: duty, terminal cleans, escalations ----------------------------------


@pytest.fixture(params=["cpsat", "greedy"])
def policy(request):
    return request.param


def small(policy, rooms=2, porters=1, nurses=1, doctors=0, cleaners=1, **sections):
    config = Config().replace(
        hospital={"floors": ["A"], "rooms_per_floor": rooms},
        staff={"porters": porters, "nurses": nurses, "doctors": doctors, "cleaners": cleaners},
        scheduler={"policy": policy},
    )
    return config.replace(**sections) if sections else config


class Driver:
    """The real Scheduler, tick by tick; the decisions of every tick kept."""

    def __init__(self, config: Config):
        self.scheduler = Scheduler(config)
        self.demand = Demand(config)
        self.decided: dict[int, list[ev.Decision]] = {}
        self.events = 0

    def tick(self, tick: int, *inbound: ev.Event) -> list[ev.Decision]:
        result = self.scheduler.tick(tick, list(inbound))
        assert not result.rejected, result.rejected
        self.decided[tick] = result.decisions
        return result.decisions

    def ticks(self, first: int, last: int) -> None:
        for tick in range(first, last + 1):
            self.tick(tick)

    def all(self, cls=ev.Decision) -> list[ev.Decision]:
        return [d for ds in self.decided.values() for d in ds if isinstance(d, cls)]

    def dispatched(self, kind: str, about: str) -> ev.TaskDispatched:
        (found,) = [
            d
            for d in self.all(ev.TaskDispatched)
            if d.kind == kind and about in (d.patient_id, d.room_id)
        ]
        return found

    def done(self, task: ev.TaskDispatched) -> ev.Event:
        """The worker's completion of a task, at the time the simulation would report it."""
        return completion(self.scheduler.hospital.layout, self.demand, task)

    def finish(self, *tasks: ev.TaskDispatched) -> int:
        """The tasks' completions, each at the first tick at or after it (ticks between them
        run empty); the last tick run."""
        pending = sorted((self.done(t) for t in tasks), key=lambda e: e.time_ms)
        tick = self.scheduler.last_tick
        while pending:
            due = max(tick + 1, -(-pending[0].time_ms // 1000))
            self.ticks(tick + 1, due - 1)
            batch = [e for e in pending if e.time_ms <= due * 1000]
            pending = pending[len(batch) :]
            self.tick(due, *batch)
            tick = due
        return tick


def arrived(patient, tick, acuity=3, isolation=False):
    return ev.PatientArrived(
        f"arrival-{patient}", tick * 1000, patient, acuity=acuity, isolation=isolation
    )


def kinds(decisions):
    return [
        (
            d.TYPE,
            getattr(d, "staff_id", None)
            or getattr(d, "patient_id", None)
            or getattr(d, "room_id", None),
        )
        for d in decisions
    ]


class TestDuty:
    def test_off_and_on_duty_at_the_first_tick_of_the_change_and_no_task_off_duty(self, policy):
        # porter-1, the only porter, works the first 10 s of every 30.
        driver = Driver(
            small(policy, shifts={"roster": ["porter-1 00:00:00-00:00:10"], "cycle_s": 30.0})
        )
        assert driver.tick(0) == []
        decisions = driver.tick(8, arrived("patient-1", 8))  # A1: 2 s escort
        assert ("task.dispatched", "porter-1") in kinds(decisions)
        escort = driver.dispatched("escort_in", "patient-1")
        assert driver.tick(9) == []
        # off duty at 10 s: announced at tick 10 (no task changes hands)
        assert kinds(driver.tick(10, driver.done(escort))) == [
            ("staff.off_duty", "porter-1"),
            ("task.dispatched", "nurse-1"),
        ]
        assert driver.decided[10][0].time_ms == 10_000
        # patient-2 arrives while porter-1 is off duty: admitted, the escort waits
        decisions = driver.tick(12, arrived("patient-2", 12))
        assert ("patient.admitted", "patient-2") in kinds(decisions)
        assert ("task.queued", "patient-2") in kinds(decisions)
        assert not any(isinstance(d, ev.TaskDispatched) for d in decisions)
        assert driver.scheduler.hospital.staff["porter-1"].task_id is None
        driver.ticks(13, 29)
        assert not driver.all(ev.StaffOnDuty)
        assert not [
            d
            for d in driver.all(ev.TaskDispatched)
            if d.staff_id == "porter-1" and 10 <= d.tick < 30
        ]
        # back at 30 s: on duty first, then the waiting escort
        decisions = driver.tick(30)
        assert kinds(decisions)[0] == ("staff.on_duty", "porter-1")
        assert isinstance(decisions[1], ev.TaskDispatched) and decisions[1].staff_id == "porter-1"
        # and off again at 40 s
        driver.ticks(31, 40)
        assert [d.tick for d in driver.all(ev.StaffOffDuty)] == [10, 40]

    def test_a_busy_member_going_off_duty_finishes_the_task(self, policy):
        driver = Driver(
            small(policy, shifts={"roster": ["porter-1 00:00:00-00:00:10"], "cycle_s": 60.0})
        )
        driver.tick(9, arrived("patient-1", 9))  # A1: escort done at 11 s
        escort = driver.dispatched("escort_in", "patient-1")
        assert kinds(driver.tick(10)) == [("staff.off_duty", "porter-1")]
        decisions = driver.tick(11, driver.done(escort))  # accepted: the task is finished
        assert [d.kind for d in decisions if isinstance(d, ev.TaskDispatched)] == ["visit"]

    def test_a_change_between_ticks_is_announced_at_the_next_tick(self, policy):
        driver = Driver(
            small(policy, shifts={"roster": ["porter-1 00:00:00-00:00:10"], "cycle_s": 60.0})
        )
        driver.tick(0)
        assert kinds(driver.tick(14)) == [("staff.off_duty", "porter-1")]

    def test_a_member_off_duty_from_the_start_is_announced_at_the_first_tick(self, policy):
        driver = Driver(small(policy, porters=2, shifts={"roster": ["porter-2 08:00-16:00"]}))
        decisions = driver.tick(0, arrived("patient-1", 0))
        assert kinds(decisions)[0] == ("staff.off_duty", "porter-2")
        assert driver.dispatched("escort_in", "patient-1").staff_id == "porter-1"
        driver.tick(1, arrived("patient-2", 1))
        assert ("task.queued", "patient-2") in kinds(driver.decided[1])  # porter-2 is off
        driver.ticks(2, 5)
        assert not driver.all(ev.StaffOnDuty)
        assert [d.tick for d in driver.all(ev.StaffOffDuty)] == [0]

    def test_a_break(self, policy):
        driver = Driver(
            small(
                policy,
                nurses=2,
                shifts={
                    "roster": ["nurse-1 00:00:00-00:01:00 break 00:00:05-00:00:20"],
                    "cycle_s": 60.0,
                },
            )
        )
        driver.ticks(0, 25)
        assert [(d.TYPE, d.tick) for d in driver.all()] == [
            ("staff.off_duty", 5),
            ("staff.on_duty", 20),
        ]


class TestTerminalClean:
    def test_a_room_that_held_an_isolation_patient_gets_a_terminal_clean(self, policy):
        driver = Driver(small(policy, porters=2, cleaners=2, hospital={"isolation_rooms": ["A2"]}))
        driver.tick(0, arrived("patient-1", 0, isolation=True), arrived("patient-2", 0))
        admitted = {d.patient_id: d.room_id for d in driver.all(ev.PatientAdmitted)}
        assert admitted == {"patient-1": "A2", "patient-2": "A1"}
        # walk both through their stay: escort in, visit, escort out
        for kind in ("escort_in", "visit", "escort_out"):
            for patient in ("patient-1", "patient-2"):
                driver.finish(driver.dispatched(kind, patient))
        plain = driver.dispatched("clean", "A1")
        terminal = driver.dispatched("clean_terminal", "A2")
        assert plain.patient_id == "patient-2" and terminal.patient_id == "patient-1"
        # its own duration: 13.5 s against 9 s, the walk (A2: 3 s) on top
        layout = driver.scheduler.hospital.layout
        assert layout.task_ms(ENTRANCE, "clean_terminal", "A2")[0] == 3_000 + 13_500
        assert driver.done(terminal).time_ms - terminal.time_ms == 16_500
        assert driver.done(plain).time_ms - plain.time_ms == 2_000 + 9_000
        # the cleaning.completed of either kind frees the room
        tick = driver.finish(terminal)
        assert ("room.available", "A2") in kinds(driver.decided[tick])

    def test_no_terminal_clean_after_a_plain_patient_in_an_isolation_room(self, policy):
        driver = Driver(small(policy, rooms=1, hospital={"isolation_rooms": ["A1"]}))
        driver.tick(0, arrived("patient-1", 0))
        assert driver.all(ev.PatientAdmitted)[0].room_id == "A1"
        for kind in ("escort_in", "visit", "escort_out"):
            driver.finish(driver.dispatched(kind, "patient-1"))
        assert driver.dispatched("clean", "A1")
        assert not [d for d in driver.all(ev.TaskDispatched) if d.kind == "clean_terminal"]

    def test_a_terminal_clean_is_logged_and_read_back(self):
        decision = ev.TaskDispatched(
            "d", 1000, 1, "task-9", "clean_terminal", "cleaner-1", "patient-1", "A2"
        )
        assert ev.parse_json(decision.to_json(), ev.DECISIONS) == decision


class TestEscalation:
    def run(self, policy, **sla):
        # two patients at once, one nurse: the second visit waits for the first
        driver = Driver(small(policy, porters=2, sla=sla))
        driver.tick(0, arrived("patient-1", 0), arrived("patient-2", 0))
        # the escorts end at 2 s (A1) and 3 s (A2): the visit in A1 goes to nurse-1, the one
        # in A2 waits from 3 s until the first ends (2 + 2 + 10 = 14 s)
        driver.finish(*(driver.dispatched("escort_in", p) for p in ("patient-1", "patient-2")))
        (first,) = driver.all(ev.TaskDispatched)[2:]
        assert (first.kind, first.room_id, first.tick) == ("visit", "A1", 2)
        last = driver.finish(first)
        assert last == 14
        driver.ticks(last + 1, last + 20)
        return driver

    def test_a_task_past_its_target_is_escalated_once(self, policy):
        driver = self.run(policy, visit_s=3.0)
        (escalation,) = driver.all(ev.TaskEscalated)
        waiting = [d for d in driver.decided[3] if isinstance(d, ev.TaskQueued)]
        assert escalation.task_id == waiting[0].task_id and escalation.kind == "visit"
        # waited 3 s at tick 6: not past it; past it at tick 7
        assert escalation.tick == 7
        assert (escalation.waited_s, escalation.sla_s) == (4.0, 3.0)
        assert escalation.to_dict()["waited_s"] == 4.0

    def test_no_target_no_escalation(self, policy):
        assert self.run(policy).all(ev.TaskEscalated) == []

    def test_a_target_not_reached_no_escalation(self, policy):
        assert self.run(policy, visit_s=60.0).all(ev.TaskEscalated) == []

    def test_the_urgent_target_for_esi_1_2_patients(self, policy):
        driver = Driver(
            small(
                policy,
                rooms=3,
                porters=1,
                doctors=1,
                nurses=0,
                sla={"escort_in_s": 100.0, "escort_in_urgent_s": 1.5},
            )
        )
        driver.tick(0, arrived("patient-1", 0), arrived("patient-2", 0, acuity=2))
        # one porter: the ESI 2 patient's escort goes first; the other waits
        assert driver.dispatched("escort_in", "patient-2").tick == 0
        driver.ticks(1, 3)
        assert driver.all(ev.TaskEscalated) == []  # the routine one is within 100 s
        # an ESI 1 arrival waits for the porter too: past 1.5 s at 4 + 2 = tick 6
        driver.tick(4, arrived("patient-4", 4, acuity=1))
        assert driver.all(ev.TaskEscalated) == []
        driver.ticks(5, 5)
        assert driver.all(ev.TaskEscalated) == []
        driver.ticks(6, 8)
        (escalation,) = driver.all(ev.TaskEscalated)
        assert escalation.tick == 6 and escalation.sla_s == 1.5 and escalation.kind == "escort_in"
        assert escalation.waited_s == 2.0

    def test_a_target_shorter_than_a_tick_escalates_in_the_tick_that_queues(self, policy):
        """Two arrivals at 0.5 s, one porter, a 0.2 s target: the escort left waiting is
        queued at the tick of 1 s already past it, and escalated in that tick, after its
        queue (the Auditor, on, checks the tick)."""
        driver = Driver(small(policy, porters=1, sla={"escort_in_s": 0.2}))
        decisions = driver.tick(
            1,
            *(ev.PatientArrived(f"arrival-{p}", 500, p) for p in ("patient-1", "patient-2")),
        )
        (queued,) = [d for d in decisions if isinstance(d, ev.TaskQueued)]
        (escalation,) = [d for d in decisions if isinstance(d, ev.TaskEscalated)]
        assert escalation.task_id == queued.task_id
        assert (escalation.waited_s, escalation.sla_s) == (0.5, 0.2)
        assert decisions.index(queued) < decisions.index(escalation)
