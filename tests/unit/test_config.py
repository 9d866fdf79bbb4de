"""Config loading: bad values, files and environment variables give a ConfigError naming
what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler import config as config_module
from scheduler.config import ConfigError


def load_env(**environ):
    return config_module.load(None, environ)


def test_an_environment_variable_overrides_a_key():
    assert load_env(HOSPITAL_STAFF_PORTERS="3").staff.porters == 3


def test_a_misspelt_environment_key_is_an_error_not_ignored():
    with pytest.raises(ConfigError, match="HOSPITAL_STAFF_PORTERZ.*porterz.*porters"):
        load_env(HOSPITAL_STAFF_PORTERZ="3")


def test_other_hospital_variables_are_not_config_keys():
    assert load_env(HOSPITAL_CONFIG="x.toml").staff.porters == 2


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("HOSPITAL_SCHEDULER_TICK_S", "0.0001", "tick_s: must be at least 0.001"),
        ("HOSPITAL_STAFF_PORTERS", "0", "porters: must be at least 1"),
        ("HOSPITAL_STAFF_CLEANERS", "0", "cleaners: must be at least 1"),
        ("HOSPITAL_RULES_MINIMISE_WALKING", "1001", "at most 1000"),
        ("HOSPITAL_RULES_LONGEST_WAIT_FIRST", "-1", "must not be negative"),
    ],
)
def test_values_out_of_range(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_env(**{key: value})


RATES = ",".join(["10"] * 24)


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"HOSPITAL_ARRIVALS_PROCESS": "profile"}, "arrivals.rates_per_hour: the profile process"),
        ({"HOSPITAL_ARRIVALS_PROCESS": "weekly"}, "arrivals.process: expected one of"),
        ({"HOSPITAL_ARRIVALS_RATES_PER_HOUR": "1,2,3"}, "arrivals.rates_per_hour: expected 24"),
        ({"HOSPITAL_ARRIVALS_RATES_PER_HOUR": ",".join(["0"] * 24)}, "rates_per_hour: .*not all 0"),
        ({"HOSPITAL_ARRIVALS_RATES_PER_HOUR": "-1," + RATES[3:]}, "rates_per_hour: .*negative"),
        ({"HOSPITAL_ARRIVALS_RATES_PER_HOUR": "nan," + RATES[3:]}, "rates_per_hour: .*finite"),
        ({"HOSPITAL_ARRIVALS_RATES_PER_HOUR": "1e308," + RATES[3:]}, "rates_per_hour: at most"),
        ({"HOSPITAL_ARRIVALS_RATES_PER_HOUR": "1e-9," + ",".join(["0"] * 23)}, "at least"),
        ({"HOSPITAL_ARRIVALS_DAY_FACTORS": "1,1,1"}, "arrivals.day_factors: expected 7"),
        ({"HOSPITAL_ARRIVALS_DAY_FACTORS": "0,0,0,0,0,0,0"}, "day_factors: .*not all 0"),
        ({"HOSPITAL_ARRIVALS_DAY_FACTORS": "1,1,1,1,1,1,-2"}, "day_factors: .*negative"),
        (
            {
                "HOSPITAL_ARRIVALS_RATES_PER_HOUR": RATES,
                "HOSPITAL_ARRIVALS_DAY_FACTORS": "1e6,1,1,1,1,1,1",
            },
            "arrivals.day_factors: at most 3600000 arrivals an hour",
        ),
        ({"HOSPITAL_DURATIONS_TREATMENT_CV": "-0.1"}, "durations.treatment_cv: expected from 0"),
        ({"HOSPITAL_DURATIONS_CLEANING_CV": "11"}, "durations.cleaning_cv: expected from 0 to 10"),
        ({"HOSPITAL_DURATIONS_TERMINAL_CLEANING_CV": "inf"}, "terminal_cleaning_cv: .*finite"),
        ({"HOSPITAL_DURATIONS_DISTRIBUTION": "weibull"}, "durations.distribution: expected one"),
        ({"HOSPITAL_DURATIONS_TREATMENT_S_BY_ACUITY": "1,2"}, "treatment_s_by_acuity: expected 5"),
        ({"HOSPITAL_DURATIONS_TREATMENT_S_BY_ACUITY": "1,2,3,4,-5"}, "by_acuity: .*negative"),
        (
            {"HOSPITAL_DURATIONS_TREATMENT_S_BY_ACUITY": "1,2,3,4,1e12"},
            "by_acuity: must be at most",
        ),
    ],
)
def test_bad_demand_values_are_refused_naming_the_key(environ, message):
    with pytest.raises(ConfigError, match=message):
        load_env(**environ)


def test_demand_keys_load_from_the_environment_and_a_file(tmp_path):
    loaded = load_env(
        HOSPITAL_ARRIVALS_PROCESS="profile",
        HOSPITAL_ARRIVALS_RATES_PER_HOUR=RATES,
        HOSPITAL_ARRIVALS_DAY_FACTORS="1,1,1,1,1,0.5,0",
        HOSPITAL_DURATIONS_TREATMENT_CV="0.5",
        HOSPITAL_DURATIONS_DISTRIBUTION="gamma",
        HOSPITAL_DURATIONS_TREATMENT_S_BY_ACUITY="30,20,10,5,0",
    )
    assert loaded.arrivals.rates_per_hour == (10.0,) * 24
    assert loaded.arrivals.day_factors == (1, 1, 1, 1, 1, 0.5, 0)
    assert loaded.durations.treatment_cv == 0.5 and loaded.durations.distribution == "gamma"
    assert loaded.durations.treatment_s_by_acuity == (30, 20, 10, 5, 0)
    config = tmp_path / "c.toml"
    config.write_text('[arrivals]\nprocess = "profile"\nrates_per_hour = [' + RATES + "]\n")
    assert config_module.load(config, {}).arrivals.rates_per_hour == (10.0,) * 24


def test_demand_keys_at_their_defaults_leave_a_logs_config_as_it_was():
    """Logs, golden files and snapshot fingerprints stay as they were without them."""
    shared = config_module.shareable(config_module.Config())
    assert set(shared["arrivals"]) == {
        "process",
        "interval_s",
        "seed",
        "acuity_mix",
        "isolation_share",
    }
    assert set(shared["durations"]) == {"treatment_s", "cleaning_s", "terminal_cleaning_s"}
    varying = config_module.Config().replace(durations={"cleaning_cv": 0.5})
    assert config_module.shareable(varying)["durations"]["cleaning_cv"] == 0.5
    assert config_module.from_mapping(config_module.shareable(varying)) == varying


def test_no_medical_staff_at_all_is_an_error_but_doctors_alone_will_do():
    with pytest.raises(ConfigError, match="nurses \\+ staff.doctors"):
        load_env(HOSPITAL_STAFF_NURSES="0", HOSPITAL_STAFF_DOCTORS="0")
    assert load_env(HOSPITAL_STAFF_NURSES="0").staff.doctors == 1


def test_unreadable_config_files(tmp_path):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not a text file"):
        config_module.load(binary, {})
    with pytest.raises(ConfigError, match="is a directory"):
        config_module.load(tmp_path, {})
    with pytest.raises(ConfigError, match="not found"):
        config_module.load(tmp_path / "missing.toml", {})


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("HOSPITAL_HOSPITAL_ROOMS_PER_FLOOR", "100000000", "at most 100000 rooms"),
        ("HOSPITAL_STAFF_PORTERS", "100000001", "porters: must be at most 100000"),
        ("HOSPITAL_ARRIVALS_SEED", str(2**63), "seed: must fit in 64 bits"),
        ("HOSPITAL_DURATIONS_TREATMENT_S", "1e20", "treatment_s: must be at most 1000000000"),
        ("HOSPITAL_SHIFTS_CYCLE_S", "1e300", "cycle_s: must be at most"),
        ("HOSPITAL_SCHEDULER_TICK_S", "1e12", "tick_s: must be at most"),
        ("HOSPITAL_KAFKA_PARTITIONS", "1000000", "partitions: must be from 1 to"),
        ("HOSPITAL_ARRIVALS_ACUITY_MIX", "1e308,1e308,1,1,1", "acuity_mix"),
    ],
)
def test_values_too_large_to_run(key, value, message):
    """Each once hung building the hospital, overflowed a 64-bit integer or a sum of weights."""
    with pytest.raises(ConfigError, match=message):
        load_env(**{key: value})


def test_the_largest_seeds_and_hospitals_still_load():
    assert load_env(HOSPITAL_ARRIVALS_SEED=str(-(2**63))).arrivals.seed == -(2**63)
    assert load_env(HOSPITAL_HOSPITAL_ROOMS_PER_FLOOR="50000").hospital.rooms_per_floor == 50000


LONG = "9" * 10_000


@pytest.mark.parametrize(
    "text, key",
    [
        (f'[staff]\nporters = "{LONG}"\n', "staff.porters"),
        (f'[hospital]\nfloors = ["{LONG}"]\n', "hospital.floors"),
        (f'[hospital]\nisolation_rooms = ["{LONG}"]\n', "hospital.isolation_rooms"),
        (f"[arrivals]\nacuity_mix = [{', '.join(['1.0'] * 3000)}]\n", "arrivals.acuity_mix"),
        (f'[shifts]\nroster = ["porter-1 {LONG}"]\n', "shifts.roster"),
        (f'[shifts]\nroster = ["{LONG} 08:00-09:00"]\n', "shifts.roster"),
    ],
)
def test_a_message_about_a_bad_value_is_one_short_line(tmp_path, text, key):
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as raised:
        config_module.load(config, {})
    assert key in str(raised.value) and len(str(raised.value)) < 200, str(raised.value)[:300]


def test_an_odd_key_is_one_line(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[staff]\n"odd\\nkey" = 1\n')
    with pytest.raises(ConfigError, match="unknown key") as raised:
        config_module.load(config, {})
    assert "\n" not in str(raised.value)


def test_toml_nested_too_deeply(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config_module.load(config, {})


def test_a_terminal_clean_takes_one_and_a_half_cleanings_unless_given(tmp_path):
    """Issue 22, item 3: `cleaning_s = 1200` left the terminal clean at 13.5 s."""
    config = tmp_path / "c.toml"
    config.write_text("[durations]\ncleaning_s = 1200.0\n")
    assert config_module.load(config, {}).durations.terminal_cleaning_s == 1800.0
    assert load_env(HOSPITAL_DURATIONS_CLEANING_S="100").durations.terminal_cleaning_s == 150.0
    # given, in the file or a variable, it is what is given
    config.write_text("[durations]\ncleaning_s = 1200.0\nterminal_cleaning_s = 2000.0\n")
    assert config_module.load(config, {}).durations.terminal_cleaning_s == 2000.0
    variable = {"HOSPITAL_DURATIONS_TERMINAL_CLEANING_S": "99"}
    assert config_module.load(config, variable).durations.terminal_cleaning_s == 99.0
    # the default hospital's, and every golden file's and scenario's, as before
    assert config_module.Config().durations.terminal_cleaning_s == 13.5
    assert load_env().durations.terminal_cleaning_s == 13.5


def test_a_terminal_clean_shorter_than_a_routine_one_is_warned_about():
    isolating = {"hospital": {"isolation_rooms": ["A1"]}}
    shorter = {**isolating, "durations": {"cleaning_s": 1200.0, "terminal_cleaning_s": 84.0}}
    (warning,) = config_module.warnings(config_module.from_mapping(shorter))
    assert "terminal_cleaning_s (84 s) is shorter than durations.cleaning_s (1200 s)" in warning
    assert not config_module.warnings(config_module.from_mapping(isolating))
    no_isolation_rooms = {"durations": shorter["durations"]}  # no terminal clean ever done
    assert not config_module.warnings(config_module.from_mapping(no_isolation_rooms))


def test_a_log_recorded_before_the_derived_default_replays_without_a_config(tmp_path):
    """A log's header holds the resolved `terminal_cleaning_s`, so the golden file recorded
    before it was derived from `cleaning_s` replays as recorded, with no --config."""
    from typer.testing import CliRunner

    from cli.main import app

    golden = Path(__file__).parents[1] / "golden" / "isolation"
    out = tmp_path / "dec.jsonl"
    result = CliRunner().invoke(app, ["solve", str(golden / "events.jsonl"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == (golden / "decisions.jsonl").read_bytes()
