"""The expert driver: pure pursuit on the centre line, in the five actions.

The expert aims at the centre-line point ``lookahead_m`` ahead of the car's
nearest point. It drives forward while that point is within
``heading_tolerance_deg`` of its heading and otherwise spins towards it; it
never stops. With noise on, it now and then runs a short burst of wrong
actions (a spin one way, then some forward driving) that pushes the car off
the line, while its label stays what it would do itself: the corrective
action that brings the car back, as DAgger wants.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from robot.sim.car import Pose, wrap_angle
from robot.sim.config import ExpertConfig
from robot.sim.track import ProgressTracker, Track, TrackPoint
from shared.actions import Action

log = logging.getLogger(__name__)


def pursuit_action(
    track: Track, pose: Pose, point: TrackPoint, config: ExpertConfig
) -> Action:
    """The expert's action for a car at ``pose`` whose nearest centre point is
    ``point``: FORWARD, LEFT or RIGHT."""
    tx, ty, _ = track.point_at(point.s_m + config.lookahead_m)
    bearing = math.atan2(ty - pose.y_m, tx - pose.x_m)
    error = wrap_angle(bearing - pose.heading_rad)
    if abs(error) <= math.radians(config.heading_tolerance_deg):
        return Action.FORWARD
    return Action.LEFT if error > 0 else Action.RIGHT


class ExpertDriver:
    """Drives a track by pure pursuit; ``act(pose)`` gives (executed, label).

    The driver follows the car along the centre line with its own
    ``ProgressTracker``, so call ``act`` once per control step with the car's
    current pose. ``seed`` drives the noise bursts.
    """

    def __init__(
        self, track: Track, config: ExpertConfig | None = None, seed: int = 0
    ) -> None:
        self.track = track
        self.config = config or ExpertConfig()
        self.tracker = ProgressTracker(track)
        self._rng = np.random.default_rng([seed, 3])
        self._burst: list[Action] = []
        #: Noise bursts started so far.
        self.bursts = 0
        #: Whether the last executed action came from a noise burst.
        self.noisy = False

    def label(self, pose: Pose) -> Action:
        """What the expert would do at ``pose`` (updates its tracker)."""
        point = self.tracker.update(pose.x_m, pose.y_m)
        return pursuit_action(self.track, pose, point, self.config)

    def act(self, pose: Pose) -> tuple[Action, Action]:
        """``(executed_action, label_action)`` for the car at ``pose``.

        Without noise both are the expert's action. During a noise burst the
        executed action is the burst's and the label the expert's correction.
        """
        label = self.label(pose)
        config = self.config
        point = self.tracker.point
        too_far = (
            point.distance_m > config.max_offset_fraction * self.track.half_width_m
        )
        if self._burst and too_far:
            log.debug("noise burst ended early %.2f m off the line", point.distance_m)
            self._burst.clear()
        if not self._burst and not too_far and config.noise > 0:
            if self._rng.random() < config.noise:
                self._start_burst()
        self.noisy = bool(self._burst)
        executed = self._burst.pop(0) if self._burst else label
        return executed, label

    def _start_burst(self) -> None:
        config = self.config
        spin = Action.LEFT if self._rng.random() < 0.5 else Action.RIGHT
        spins = int(self._rng.integers(1, config.max_spin_steps + 1))
        forwards = int(self._rng.integers(0, config.max_forward_steps + 1))
        self._burst = [spin] * spins + [Action.FORWARD] * forwards
        self.bursts += 1
