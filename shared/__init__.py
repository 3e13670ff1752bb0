"""What the car and the workstation must agree on.

Actions, frame geometry, the drive format, the model card, configuration and
errors. This package imports nothing but the standard library, numpy and
Pillow, so that both sides can use it without TensorFlow.
"""

__version__ = "0.1.0"
