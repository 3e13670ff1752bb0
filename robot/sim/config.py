"""Settings of the simulated world, car, camera and expert driver.

Each section is a plain dataclass with defaults sized for a small indoor car,
so that ``shared.config.from_dict`` can load it from a TOML table and the
settings can be saved next to every recorded drive. Every section checks
itself when built and raises ``SimulationError`` with the bad value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from shared.errors import SimulationError

#: The track shapes the simulator can build.
TRACK_SHAPES = ("oval", "figure8", "random")


def _require_positive(section: str, **values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise SimulationError(
                f"{section}.{name} is {value!r}; it must be a positive number"
            )


@dataclass
class TrackConfig:
    """The floor, the track and its tape lines (lengths in metres)."""

    #: Distance between the two white edge lines, measured at their centres.
    width_m: float = 0.5
    #: Width of the white edge tape.
    edge_line_m: float = 0.04
    #: Width of the yellow centre dashes.
    centre_line_m: float = 0.025
    #: Length of a yellow dash and of the gap after it.
    dash_m: float = 0.15
    gap_m: float = 0.15
    #: Floor beyond the track's bounding box before the walls start.
    margin_m: float = 1.2
    #: Size of one pixel of the top-down floor raster.
    resolution_m: float = 0.01
    #: Spacing of the centre-line polyline used for geometry queries.
    spacing_m: float = 0.01
    #: Oval: length of each straight and radius of the two half circles.
    oval_straight_m: float = 2.0
    oval_radius_m: float = 1.0
    #: Figure-eight: half its length and half its width.
    figure8_half_length_m: float = 2.4
    figure8_half_width_m: float = 1.2
    #: Random: mean radius, and the largest Fourier coefficient relative to it.
    random_radius_m: float = 1.6
    random_amplitude: float = 0.25
    #: Highest harmonic of the random radius perturbation.
    random_harmonics: int = 4
    #: A random track is rejected when its centre line curves tighter than this.
    min_turn_radius_m: float = 0.45
    #: ... or when two parts of it come closer than this many track widths.
    min_clearance_widths: float = 1.6

    def __post_init__(self) -> None:
        _require_positive(
            "track",
            width_m=self.width_m,
            edge_line_m=self.edge_line_m,
            centre_line_m=self.centre_line_m,
            dash_m=self.dash_m,
            gap_m=self.gap_m,
            resolution_m=self.resolution_m,
            spacing_m=self.spacing_m,
            oval_straight_m=self.oval_straight_m,
            oval_radius_m=self.oval_radius_m,
            figure8_half_length_m=self.figure8_half_length_m,
            figure8_half_width_m=self.figure8_half_width_m,
            random_radius_m=self.random_radius_m,
            min_turn_radius_m=self.min_turn_radius_m,
            min_clearance_widths=self.min_clearance_widths,
        )
        if self.margin_m < 0:
            raise SimulationError(
                f"track.margin_m is {self.margin_m!r}; it must be 0 or more"
            )
        if not 0 <= self.random_amplitude < 1:
            raise SimulationError(
                f"track.random_amplitude is {self.random_amplitude!r}; "
                "use a value in [0, 1), e.g. 0.25"
            )
        if self.random_harmonics < 2:
            raise SimulationError(
                f"track.random_harmonics is {self.random_harmonics!r}; use 2 or more"
            )
        if self.oval_radius_m <= self.width_m / 2:
            raise SimulationError(
                f"track.oval_radius_m {self.oval_radius_m!r} is not larger than "
                f"half the track width {self.width_m / 2!r}; make the oval wider"
            )


@dataclass
class CarConfig:
    """A kinematic skid-steer car.

    Motor values in [-1, 1] become a forward speed ``(left + right) / 2 *
    max_speed_m_s`` and a yaw rate ``(right - left) / 2 * max_yaw_rate_rad_s``.
    The actions use the same duties as the real car's drivetrain, so FORWARD
    drives at ``speed * max_speed_m_s`` and LEFT spins at
    ``turn_speed * max_yaw_rate_rad_s``.
    """

    max_speed_m_s: float = 1.0
    max_yaw_rate_rad_s: float = 4.0
    #: Motor duty for forward and backward, as ``MotorsConfig.speed``.
    speed: float = 0.6
    #: Motor duty for spinning in place, as ``MotorsConfig.turn_speed``.
    turn_speed: float = 0.6

    def __post_init__(self) -> None:
        _require_positive(
            "car",
            max_speed_m_s=self.max_speed_m_s,
            max_yaw_rate_rad_s=self.max_yaw_rate_rad_s,
        )
        for name in ("speed", "turn_speed"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise SimulationError(
                    f"car.{name} is {value!r}; a motor duty must be in (0, 1]"
                )

    @property
    def speed_m_s(self) -> float:
        """Forward speed of the FORWARD action."""
        return self.speed * self.max_speed_m_s

    @property
    def yaw_rate_rad_s(self) -> float:
        """Spin rate of the LEFT and RIGHT actions."""
        return self.turn_speed * self.max_yaw_rate_rad_s


@dataclass
class SimCameraConfig:
    """A pinhole camera on the car, looking forward and down.

    The defaults are the Raspberry Pi camera v2 (62.2 x 48.8 degrees on its
    4:3 sensor): the model frame is the centred square crop, so its field of
    view is the sensor's vertical one in both directions.
    """

    #: Height of the lens above the floor.
    height_m: float = 0.20
    #: Down-tilt of the optical axis below the horizontal.
    pitch_deg: float = 20.0
    #: Field of view of the square model frame, both ways.
    fov_deg: float = 48.8
    #: Lens position ahead of the car's turning centre.
    forward_offset_m: float = 0.05
    #: ``bilinear`` (smoother) or ``nearest`` (faster) raster sampling.
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if not 0 < self.fov_deg < 170:
            raise SimulationError(
                f"camera.fov_deg is {self.fov_deg!r}; use a value in (0, 170)"
            )
        if self.interpolation not in ("bilinear", "nearest"):
            raise SimulationError(
                f"camera.interpolation is {self.interpolation!r}; "
                "use 'bilinear' or 'nearest'"
            )

    @property
    def pitch_rad(self) -> float:
        return math.radians(self.pitch_deg)


@dataclass
class ExpertConfig:
    """The pure-pursuit expert and its noise injection."""

    #: Distance along the centre line to the point the expert steers at.
    lookahead_m: float = 0.35
    #: Drive forward while the target is within this angle, else spin to it.
    heading_tolerance_deg: float = 12.0
    #: Chance per step that a burst of wrong actions starts (0 disables noise).
    noise: float = 0.0
    #: A burst spins one way for 1..max_spin_steps, then drives forward for
    #: 0..max_forward_steps, pushing the car off the centre line.
    max_spin_steps: int = 5
    max_forward_steps: int = 6
    #: A burst ends early once the car is this fraction of the half width off
    #: the centre line, so that noise never drives the car off the track.
    max_offset_fraction: float = 0.6

    def __post_init__(self) -> None:
        _require_positive(
            "expert",
            lookahead_m=self.lookahead_m,
            heading_tolerance_deg=self.heading_tolerance_deg,
        )
        if not 0 <= self.noise <= 1:
            raise SimulationError(
                f"expert.noise is {self.noise!r}; it is a probability per step "
                "in [0, 1], e.g. 0.03"
            )
        if self.max_spin_steps < 1 or self.max_forward_steps < 0:
            raise SimulationError(
                f"expert burst lengths {self.max_spin_steps!r} spin and "
                f"{self.max_forward_steps!r} forward steps are invalid; use at "
                "least 1 spin step and 0 or more forward steps"
            )
        if not 0 < self.max_offset_fraction < 1:
            raise SimulationError(
                f"expert.max_offset_fraction is {self.max_offset_fraction!r}; "
                "use a value in (0, 1)"
            )


@dataclass
class SimConfig:
    """Everything the simulator needs: which world and how it behaves."""

    #: oval, figure8 or random.
    shape: str = "oval"
    #: Picks the random track's shape, the floor, the lighting and the noise.
    seed: int = 0
    #: Rate at which the car's motion is integrated in real time.
    control_rate_hz: float = 50.0
    #: Put the car back on the centre line after this long off the track
    #: (0 never does).
    reset_after_off_track_s: float = 2.0
    track: TrackConfig = field(default_factory=TrackConfig)
    car: CarConfig = field(default_factory=CarConfig)
    camera: SimCameraConfig = field(default_factory=SimCameraConfig)
    expert: ExpertConfig = field(default_factory=ExpertConfig)

    def __post_init__(self) -> None:
        if self.shape not in TRACK_SHAPES:
            raise SimulationError(
                f"track shape {self.shape!r} is unknown; use one of "
                f"{', '.join(TRACK_SHAPES)}"
            )
        _require_positive("sim", control_rate_hz=self.control_rate_hz)
        if self.reset_after_off_track_s < 0:
            raise SimulationError(
                f"sim.reset_after_off_track_s is {self.reset_after_off_track_s!r}; "
                "use 0 (never) or a positive number of seconds"
            )
