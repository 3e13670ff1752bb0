"""Tests of the simulator's settings."""

from __future__ import annotations

import pytest

from robot.sim.config import CarConfig, ExpertConfig, SimCameraConfig, SimConfig
from shared.config import load_config, to_dict
from shared.errors import ConfigError, SimulationError


def test_sim_config_loads_from_toml(tmp_path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text(
        'shape = "figure8"\nseed = 3\n[track]\nwidth_m = 0.6\n'
        "[camera]\npitch_deg = 25\n[expert]\nnoise = 0.05\n"
    )

    config = load_config(SimConfig, path)

    assert config.shape == "figure8" and config.seed == 3
    assert config.track.width_m == 0.6
    assert config.camera.pitch_deg == 25.0
    assert config.expert.noise == 0.05
    assert to_dict(config)["car"] == to_dict(CarConfig())


def test_sim_config_rejects_an_unknown_key(tmp_path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text("[camera]\npich_deg = 25\n")

    with pytest.raises(ConfigError, match="pich_deg; known keys: height_m, pitch_deg"):
        load_config(SimConfig, path)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SimConfig(shape="square"), "'square' is unknown"),
        (lambda: CarConfig(speed=1.5), "car.speed is 1.5"),
        (lambda: SimCameraConfig(interpolation="cubic"), "'cubic'"),
        (lambda: ExpertConfig(noise=2.0), "expert.noise is 2.0"),
    ],
)
def test_sim_config_rejects_bad_values(build, message: str) -> None:
    with pytest.raises(SimulationError, match=message):
        build()


def test_car_config_speeds_follow_the_motor_duties() -> None:
    car = CarConfig(
        max_speed_m_s=1.0, max_yaw_rate_rad_s=4.0, speed=0.5, turn_speed=0.25
    )

    assert car.speed_m_s == 0.5
    assert car.yaw_rate_rad_s == 1.0
