"""Typed configuration: defaults, TOML loading and one-line validation errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from shared.config import (
    CameraConfig,
    RobotConfig,
    TrainerConfig,
    from_dict,
    load_config,
    to_dict,
)
from shared.errors import ConfigError


def test_config_none_gives_the_defaults() -> None:
    config = load_config(RobotConfig, None)
    assert config == RobotConfig()
    assert config.drives_path == Path("~/malpi/drives").expanduser()


def test_config_loads_toml_with_nested_tables(tmp_path: Path) -> None:
    path = tmp_path / "robot.toml"
    path.write_text(
        'car_name = "red"\n'
        "loop_rate_hz = 15\n"
        "[camera]\n"
        'backend = "sim"\n'
        "[motors]\n"
        "left_pins = [5, 6]\n"
        "speed = 1\n"
    )
    config = load_config(RobotConfig, path)
    assert config.car_name == "red"
    assert config.loop_rate_hz == 15.0 and isinstance(config.loop_rate_hz, float)
    assert config.camera.backend == "sim" and config.camera.rate_hz == 30.0
    assert config.motors.left_pins == [5, 6] and config.motors.speed == 1.0
    assert to_dict(config)["motors"]["left_pins"] == [5, 6]


def test_config_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "robot.toml"
    path.write_text("[camera]\nbakend = 'sim'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(RobotConfig, path)
    message = str(caught.value)
    assert "unknown key robot.toml.camera.bakend" in message
    known = ", ".join(f.name for f in dataclasses.fields(CameraConfig))
    assert message.endswith(f"known keys: {known}") and "rate_hz" in known


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"loop_rate_hz": "fast"}, "config.loop_rate_hz must be float, got 'fast'"),
        ({"skip_stopped": 1}, "config.skip_stopped must be bool, got 1"),
        ({"web": {"port": True}}, "config.web.port must be int, got True"),
        ({"web": {"port": 80.5}}, "config.web.port must be int, got 80.5"),
        ({"motors": {"left_pins": 17}}, "config.motors.left_pins must be a list"),
        ({"motors": {"left_pins": [17, "x"]}}, "left_pins[1] must be int"),
        ({"camera": "sim"}, "config.camera must be a table, got 'sim'"),
    ],
)
def test_config_type_errors_name_the_value(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_dict(RobotConfig, data)
    assert message in str(caught.value)


def test_config_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(TrainerConfig, tmp_path / "absent.toml")
    bad = tmp_path / "trainer.toml"
    bad.write_text("project = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(TrainerConfig, bad)


def test_config_round_trips_through_to_dict() -> None:
    config = RobotConfig(car_name="blue")
    config.web.port = 9000
    assert from_dict(RobotConfig, to_dict(config)) == config
