"""The car: camera, drivetrain, TFLite pilot, drive loop and web app.

Nothing here imports TensorFlow; the pilot runs on a TFLite runtime.
"""
