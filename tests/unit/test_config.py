"""Config loading: bad values, files and environment variables give a ConfigError naming
what is wrong."""

from __future__ import annotations

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


@pytest.mark.parametrize("key, value, message", [
    ("HOSPITAL_SCHEDULER_TICK_S", "0.0001", "tick_s: must be at least 0.001"),
    ("HOSPITAL_STAFF_PORTERS", "0", "porters: must be at least 1"),
    ("HOSPITAL_STAFF_CLEANERS", "0", "cleaners: must be at least 1"),
    ("HOSPITAL_RULES_MINIMISE_WALKING", "1001", "at most 1000"),
    ("HOSPITAL_RULES_LONGEST_WAIT_FIRST", "-1", "must not be negative"),
])
def test_values_out_of_range(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_env(**{key: value})


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
