"""The simulator: a track, a skid-steer car, a camera and an expert driver.

Everything here is numpy (and Pillow for pictures), so it runs on the car,
on the workstation and in tests. ``robot drive --sim`` uses ``backends`` as
the robot's camera and motors; the trainer uses ``evaluate`` to drive a
model round a track and count its laps and departures.
"""
