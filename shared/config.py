"""Typed configuration, one TOML file per side.

Each section is a dataclass with defaults. Loading validates types and
rejects unknown keys with the list of known ones, so that a typo in a
config file is an error rather than a silently ignored setting. The
resolved configuration is saved (as a plain dict) next to every drive and
model, so that each can be traced to the settings that produced it.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from shared.errors import ConfigError

T = TypeVar("T")


# --- the car -----------------------------------------------------------------


@dataclass
class CameraConfig:
    """Where frames come from."""

    #: picamera2, opencv, replay or sim.
    backend: str = "picamera2"
    #: OpenCV device index for a USB webcam.
    device: int = 0
    #: A drive folder to replay frames from, for the replay backend.
    replay_path: str = ""
    #: Replay speed in frames per second; 0 keeps the drive's own pace.
    replay_rate_hz: float = 0.0
    #: Frames per second asked of the camera.
    rate_hz: float = 30.0
    hflip: bool = False
    vflip: bool = False


@dataclass
class MotorsConfig:
    """How actions become motor commands."""

    #: gpiozero, motorhat or sim.
    backend: str = "gpiozero"
    #: gpiozero Robot pins: (forward, backward) of each side, BCM numbering.
    left_pins: list[int] = field(default_factory=lambda: [17, 18])
    right_pins: list[int] = field(default_factory=lambda: [27, 22])
    #: Adafruit Motor HAT channels (1-4) of the left and right motors.
    hat_left_channel: int = 1
    hat_right_channel: int = 2
    #: Motor duty in [0, 1] for forward and backward.
    speed: float = 0.6
    #: Motor duty in [0, 1] for spinning in place.
    turn_speed: float = 0.6


@dataclass
class PilotConfig:
    """The model that drives in pilot mode."""

    #: A model.tflite (its model.json beside it), or empty for models/current.
    model_path: str = ""
    #: The pilot never acts on a frame older than this.
    max_frame_age_ms: float = 150.0
    #: ai_edge_litert, tflite_runtime, tensorflow, or auto (first installed).
    runtime: str = "auto"


@dataclass
class WebConfig:
    """The control web app."""

    host: str = "0.0.0.0"
    port: int = 8887
    #: Motors stop when no control message arrived for this long.
    deadman_ms: float = 500.0
    #: In the pilot modes, stop the car (back to user mode) when a browser
    #: that was watching goes quiet for deadman_ms; a pilot started with no
    #: browser open is not affected until one shows up.
    pilot_deadman: bool = True
    #: Access token; empty means a new random one at each start.
    token: str = ""


@dataclass
class RobotConfig:
    """Everything ``robot drive`` needs, read from ``robot.toml``."""

    #: Holds drives/ and models/.
    home: str = "~/malpi"
    car_name: str = "malpi"
    loop_rate_hz: float = 20.0
    #: Skip frames whose action is stop while recording.
    skip_stopped: bool = True
    camera: CameraConfig = field(default_factory=CameraConfig)
    motors: MotorsConfig = field(default_factory=MotorsConfig)
    pilot: PilotConfig = field(default_factory=PilotConfig)
    web: WebConfig = field(default_factory=WebConfig)

    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser()

    @property
    def drives_path(self) -> Path:
        return self.home_path / "drives"

    @property
    def models_path(self) -> Path:
        return self.home_path / "models"


# --- the workstation -----------------------------------------------------------


@dataclass
class TrainerConfig:
    """Where the workstation keeps its data, read from ``trainer.toml``."""

    #: Holds drives/, searches/ and models/.
    project: str = "."
    #: Decoded-frame cache; empty means <project>/.cache.
    cache_dir: str = ""

    @property
    def project_path(self) -> Path:
        return Path(self.project).expanduser()


# --- loading -----------------------------------------------------------------


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, checking keys and types.

    Raises:
        ConfigError: a key is unknown or a value has the wrong type.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown key {where}.{unknown[0]}; known keys: {', '.join(known)}"
        )
    values = {}
    for name, value in data.items():
        values[name] = _coerce(hints[name], value, f"{where}.{name}")
    return cls(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(option, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} has the wrong type: {value!r}")
    if hint is Any:
        return value
    if hint is type(None):
        if value is None:
            return value
    elif hint is float and isinstance(value, (int, float)):
        if not isinstance(value, bool):
            return float(value)
    elif isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where} must be {name}, got {value!r}")


def load_config(cls: type[T], path: str | Path | None) -> T:
    """Load ``cls`` from a TOML file; ``None`` gives the defaults.

    Raises:
        ConfigError: the file is missing, not TOML, or has bad keys or values.
    """
    if path is None:
        return cls()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"config file {str(path)!r} does not exist") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(
            f"config file {str(path)!r} is not valid TOML: {err}"
        ) from err
    return from_dict(cls, data, where=path.name)


def to_dict(config: Any) -> dict[str, Any]:
    """The configuration as plain data, for saving next to a drive or model."""
    return dataclasses.asdict(config)
