"""The hospital's demand: when patients arrive, how urgent they are, and how long their
treatment and the cleaning of their room take.

    demand = Demand(config, seed)
    demand.arrivals()                       # the run's patients, in order of arrival
    demand.work_ms(task)                    # the treatment or cleaning of a dispatched task
    mean_treatment_s(config, acuity=2)      # what a planner may expect (no seed: no draws)

**Arrivals.** `fixed`: one every `interval_s`; `poisson`: exponential gaps of that mean;
`profile`: a non-homogeneous Poisson process whose rate follows the clock (`ArrivalProfile`),
made by inverting its cumulative intensity Lambda (the expected arrivals since time 0):
patient n arrives at Lambda^-1(Lambda(t_{n-1}) + E_n), E_n a unit exponential.

**Durations.** The configured durations are means. With a `_cv` above 0 each one is drawn
from a lognormal (mean m, cv c: sigma^2 = ln(1 + c^2), mu = ln m - sigma^2 / 2) or a gamma
(shape 1 / c^2, scale m c^2; with c = 1 an exponential), by inversion of one uniform: the
quantile function of the uniform, so a duration grows with its uniform.

**What is random, and keyed by what (common random numbers).** Every draw about a patient
comes from a stream of its own, `random.Random(f"{seed}:{name}:{patient_id}")` (a string seed
is hashed with SHA-512: the same numbers on every run, machine and Python process):

    arrival     the `profile` process's E_n for patient n
    clinical    the `profile` process's ESI level, then isolation, of the patient
    treatment   the uniform of the patient's treatment (the visit's work)
    cleaning    the uniform of the cleaning of the room the patient left (routine or terminal)

So a patient's draws depend on nothing the scheduler decides, nor on any other patient:
every policy, and every worker of the distributed mode, sees the same patients with the
same treatments, and the same cleaning after each of them. (Task ids are not keys: they
count the tasks made, which differ between policies.) The `fixed` and `poisson` processes
keep the streams they always had, as their recorded runs depend on them: `Random(seed)` for
the gaps and `Random(f"{seed}:clinical")` for ESI level and isolation, drawn in arrival
order; neither depends on the policy either.

Walking is not random: it is the travel model's (`scheduler/layout.py`).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import random
from collections.abc import Callable, Iterator, Sequence

from scheduler import events as ev
from scheduler.config import MAX_SECONDS, Config

HOUR_S = 3600.0
PATIENT_PREFIX = "patient-"
CLEANING_KINDS = ("clean", "clean_terminal")


def stream(seed: int, name: str, key: str) -> random.Random:
    """The random stream `name` of `key` (a patient id) in the run of `seed`."""
    return random.Random(f"{seed}:{name}:{key}")


def uniform(rng: random.Random) -> float:
    """A uniform draw strictly between 0 and 1, where every quantile function is finite."""
    return (rng.getrandbits(53) + 0.5) / 2**53


# --- durations ------------------------------------------------------------------------------


class Distribution:
    """A duration of mean `mean_s` and coefficient of variation `cv` (0: always the mean),
    drawn by its quantile function."""

    def __init__(self, mean_s: float, cv: float, kind: str = "lognormal"):
        self.mean_s, self.cv, self.kind = mean_s, cv, kind
        self.quantile: Callable[[float], float] = self._quantile_function()

    def _quantile_function(self) -> Callable[[float], float]:
        mean, cv = self.mean_s, self.cv
        if cv == 0 or mean == 0:
            return lambda u: mean
        if self.kind == "gamma":
            # scipy only here, and only for a run that asks for gamma durations: a run of
            # the default hospital imports neither scipy nor numpy.
            from scipy.special import gammaincinv

            shape, scale = 1 / cv**2, mean * cv**2
            return lambda u: min(MAX_SECONDS, scale * float(gammaincinv(shape, u)))
        from statistics import NormalDist

        sigma = math.sqrt(math.log1p(cv**2))
        mu = math.log(mean) - sigma**2 / 2
        normal_quantile = NormalDist().inv_cdf
        return lambda u: min(MAX_SECONDS, math.exp(mu + sigma * normal_quantile(u)))

    def __repr__(self) -> str:
        return f"Distribution({self.mean_s!r}, {self.cv!r}, {self.kind!r})"


def mean_treatment_s(config: Config, acuity: int | None = None) -> float:
    """The mean treatment of a patient of ESI level `acuity`; without one, over the acuity
    mix (the same for every level unless `treatment_s_by_acuity` is set)."""
    durations = config.durations
    by_acuity = durations.treatment_s_by_acuity
    if not by_acuity:
        return durations.treatment_s
    if acuity is not None:
        return by_acuity[acuity - 1]
    mix = config.arrivals.acuity_mix
    return sum(share * mean for share, mean in zip(mix, by_acuity)) / sum(mix)


def mean_cleaning_s(config: Config, kind: str = "clean") -> float:
    """The mean cleaning of a room: routine (`clean`) or terminal (`clean_terminal`)."""
    durations = config.durations
    return durations.terminal_cleaning_s if kind == "clean_terminal" else durations.cleaning_s


def treatment_distribution(config: Config, acuity: int | None = None) -> Distribution:
    durations = config.durations
    return Distribution(
        mean_treatment_s(config, acuity), durations.treatment_cv, durations.distribution
    )


def cleaning_distribution(config: Config, kind: str = "clean") -> Distribution:
    durations = config.durations
    cv = durations.terminal_cleaning_cv if kind == "clean_terminal" else durations.cleaning_cv
    return Distribution(mean_cleaning_s(config, kind), cv, durations.distribution)


def durations_vary(config: Config) -> bool:
    """Whether any patient's treatment or cleaning differs from the configured one."""
    durations = config.durations
    return bool(
        durations.treatment_s_by_acuity
        or durations.treatment_cv
        or durations.cleaning_cv
        or durations.terminal_cleaning_cv
    )


# --- arrivals -------------------------------------------------------------------------------


class ArrivalProfile:
    """A rate that follows the clock: `rates_per_hour[h] * day_factors[d]` patients an hour
    in hour h (from h:00) of day d, day 0 being the run's first. Constant within an hour;
    it repeats every week (every day without factors)."""

    def __init__(self, rates_per_hour: Sequence[float], day_factors: Sequence[float] = ()):
        self.hourly = [rate * factor for factor in day_factors or (1.0,) for rate in rates_per_hour]
        self.period_s = len(self.hourly) * HOUR_S
        # Lambda at the start of each hour of the period; the last is a whole period's worth.
        self.starts = list(itertools.accumulate(self.hourly, initial=0.0))
        self.per_period = self.starts[-1]

    def _hour(self, time_s: float) -> tuple[int, int, float]:
        """(periods, hour of the period, seconds into the hour) of a time."""
        periods, into = divmod(time_s, self.period_s)
        hour, seconds = divmod(into, HOUR_S)
        return int(periods), min(int(hour), len(self.hourly) - 1), seconds

    def rate_per_hour(self, time_s: float) -> float:
        """Expected arrivals an hour at `time_s`."""
        return self.hourly[self._hour(time_s)[1]]

    def mean_rate_per_hour(self) -> float:
        """Expected arrivals an hour, over a whole period."""
        return self.per_period / len(self.hourly)

    def expected(self, time_s: float) -> float:
        """Lambda(t): the expected arrivals from time 0 to `time_s`."""
        periods, hour, seconds = self._hour(time_s)
        return periods * self.per_period + self.starts[hour] + self.hourly[hour] * seconds / HOUR_S

    def time_of(self, expected: float) -> float:
        """Lambda^-1: the first time by which `expected` arrivals are expected."""
        periods, rest = divmod(expected, self.per_period)
        # The last hour whose start is at or below `rest`: an hour of rate 0 is never one.
        hour = bisect.bisect_right(self.starts, rest) - 1
        if hour >= len(self.hourly):  # `rest` rounded up to a whole period
            periods, rest, hour = periods + 1, 0.0, bisect.bisect_right(self.starts, 0.0) - 1
        seconds = (rest - self.starts[hour]) / self.hourly[hour] * HOUR_S
        return periods * self.period_s + hour * HOUR_S + min(seconds, HOUR_S)


@functools.lru_cache(maxsize=16)
def _profile(rates: tuple[float, ...], factors: tuple[float, ...]) -> ArrivalProfile:
    return ArrivalProfile(rates, factors)


def arrival_profile(config: Config) -> ArrivalProfile | None:
    """The profile of a `profile` run; None for the others."""
    arrivals = config.arrivals
    if arrivals.process != "profile":
        return None
    return _profile(arrivals.rates_per_hour, arrivals.day_factors)


def arrival_rate_per_hour(config: Config, time_s: float) -> float:
    """Expected arrivals an hour at simulated time `time_s`."""
    profile = arrival_profile(config)
    return 3600 / config.arrivals.interval_s if profile is None else profile.rate_per_hour(time_s)


def mean_arrival_rate_per_s(config: Config) -> float:
    """Expected arrivals a second in the long run (a profile's over its week, or its day)."""
    profile = arrival_profile(config)
    return (
        1 / config.arrivals.interval_s if profile is None else profile.mean_rate_per_hour() / 3600
    )


def patient_number(patient_id: str) -> int | None:
    """N of `patient-N`, the N-th patient the run's arrivals made; None for another id."""
    digits = patient_id[len(PATIENT_PREFIX) :]
    if not patient_id.startswith(PATIENT_PREFIX) or not (digits.isascii() and digits.isdigit()):
        return None
    if digits[0] == "0":  # `patient-0`, `patient-07`: not an id the arrivals make
        return None
    return int(digits)


class Demand:
    """The run of `seed`'s patients and their durations (the seed defaults to the config's).

    A patient other than the arrivals' `patient-N` (sent by hand, say) has no ESI level
    here: their treatment is drawn around the acuity mix's mean."""

    def __init__(self, config: Config, seed: int | None = None):
        self.config = config
        self.seed = config.arrivals.seed if seed is None else seed
        self.profile = arrival_profile(config)
        mix = config.arrivals.acuity_mix
        self._levels = [level for level, weight in enumerate(mix, start=1) if weight]
        self._weights = [weight for weight in mix if weight]
        self._share = config.arrivals.isolation_share
        self._plain = len(self._levels) == 1 and self._share == 0.0  # nothing to draw
        # The shared stream's patients, replayed to find one's ESI level (`patient`).
        self._replay = self._shared_stream_arrivals()
        self._replayed = bytearray()  # 2 * acuity + isolation of patients 1, 2, ...
        self._next_replayed: ev.PatientArrived | None = None
        self.durations_vary = durations_vary(config)
        self._by_acuity = bool(config.durations.treatment_s_by_acuity)
        self._treatment = {None: treatment_distribution(config)} | {
            level: treatment_distribution(config, level) for level in range(1, 6)
        }
        self._cleaning = {kind: cleaning_distribution(config, kind) for kind in CLEANING_KINDS}
        self._fixed_work_ms = {
            "visit": round(mean_treatment_s(config) * 1000),
            **{kind: round(mean_cleaning_s(config, kind) * 1000) for kind in CLEANING_KINDS},
        }

    # --- patients ---

    def arrivals(self) -> Iterator[ev.PatientArrived]:
        """The run's patients, in order: `arrival-N` / `patient-N`, each with an ESI level
        drawn from `acuity_mix` and needing isolation with `isolation_share`."""
        if self.profile is None:
            return self._shared_stream_arrivals()
        return self._profile_arrivals(self.profile)

    def arrival_times(self) -> Iterator[int]:
        """The arrival times in ms, in order."""
        return (arrival.time_ms for arrival in self.arrivals())

    def _profile_arrivals(self, profile: ArrivalProfile) -> Iterator[ev.PatientArrived]:
        expected = 0.0  # Lambda at the last arrival
        for n in itertools.count(1):
            patient_id = f"{PATIENT_PREFIX}{n}"
            expected += stream(self.seed, "arrival", patient_id).expovariate(1.0)
            at_ms = round(profile.time_of(expected) * 1000)
            acuity, isolation = self._own_clinical(patient_id)
            yield ev.PatientArrived(
                f"arrival-{n}", at_ms, patient_id, acuity=acuity, isolation=isolation
            )

    def _own_clinical(self, patient_id: str) -> tuple[int, bool]:
        """The profile process's ESI level and isolation of a patient, from their stream."""
        if self._plain:
            return self._levels[0], False
        rng = stream(self.seed, "clinical", patient_id)
        acuity = rng.choices(self._levels, self._weights)[0]
        return acuity, rng.random() < self._share

    def _shared_stream_arrivals(self) -> Iterator[ev.PatientArrived]:
        """The `fixed` and `poisson` processes, on the streams they always had. The
        clinical draws have a stream of their own, so the times do not depend on them."""
        rng = random.Random(f"{self.seed}:clinical")
        for n, at in enumerate(self._shared_stream_times(), start=1):
            if self._plain:
                yield ev.PatientArrived(f"arrival-{n}", at, f"patient-{n}", acuity=self._levels[0])
                continue
            acuity = rng.choices(self._levels, self._weights)[0]
            yield ev.PatientArrived(
                f"arrival-{n}",
                at,
                f"patient-{n}",
                acuity=acuity,
                isolation=rng.random() < self._share,
            )

    def _shared_stream_times(self) -> Iterator[int]:
        interval_ms = self.config.arrivals.interval_s * 1000
        if self.config.arrivals.process == "fixed":
            n = 0
            while True:
                yield round(n * interval_ms)
                n += 1
        rng = random.Random(self.seed)
        now = 0.0
        while True:
            yield round(now)
            now += rng.expovariate(1 / interval_ms)

    def patient(self, patient_id: str, by_ms: float = math.inf) -> tuple[int, bool] | None:
        """(ESI level, isolation) of a patient the arrivals made, arrived by `by_ms`; None
        for anybody else. (The `fixed` and `poisson` processes replay their stream up to the
        patient, never past `by_ms`: an odd id costs no more than the patients so far.)"""
        n = patient_number(patient_id)
        if n is None:
            return None
        if self.profile is not None:
            return self._own_clinical(patient_id)
        if self._plain:
            return self._levels[0], False
        replayed = self._replayed
        while len(replayed) < n:
            arrival = self._next_replayed or next(self._replay)
            if arrival.time_ms > by_ms:
                self._next_replayed = arrival  # for a later call
                return None
            self._next_replayed = None
            replayed.append(2 * arrival.acuity + arrival.isolation)
        code = replayed[n - 1]
        return code // 2, bool(code % 2)

    # --- durations ---

    def treatment_s(self, patient_id: str, acuity: int | None = None) -> float:
        """The treatment of a patient of ESI level `acuity` (None: around the mix's mean)."""
        distribution = self._treatment[acuity]
        if distribution.cv == 0:
            return distribution.mean_s
        return distribution.quantile(uniform(stream(self.seed, "treatment", patient_id)))

    def cleaning_s(self, patient_id: str, kind: str = "clean") -> float:
        """The cleaning (`clean` or `clean_terminal`) of the room `patient_id` left."""
        distribution = self._cleaning[kind]
        if distribution.cv == 0:
            return distribution.mean_s
        return distribution.quantile(uniform(stream(self.seed, "cleaning", patient_id)))

    def work_ms(self, task: ev.TaskDispatched) -> int:
        """The treatment or cleaning of a dispatched task, in ms (escorts: none): the
        configured one unless durations vary, else drawn for the task's patient."""
        kind = task.kind
        if not self.durations_vary or kind not in self._fixed_work_ms:
            return self._fixed_work_ms.get(kind, 0)
        if kind == "visit":
            known = self._by_acuity and self.patient(task.patient_id, by_ms=task.time_ms)
            seconds = self.treatment_s(task.patient_id, known[0] if known else None)
        else:
            seconds = self.cleaning_s(task.patient_id, kind)
        return round(seconds * 1000)
