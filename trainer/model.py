"""The drive model: the seed's CNN, its hyperparameters and its optimizers.

The network takes a camera frame as it is (120x120x3 uint8) and scales the
pixels in its first layer, so the exported TFLite model needs no outside
preprocessing::

    uint8 frame -> Rescaling -> Dropout d0
      -> Conv 24 5x5/2 -> Conv 32 5x5/2 -> Dropout d1
      -> Conv 64 5x5/2 -> Dropout d2
      -> Conv 64 3x3/2 -> Conv 64 3x3/1 -> Dropout d3 -> Flatten
      -> head: dk    = Dense 100 -> Dropout d4 -> Dense 50
               fc256 = Dense 256 -> Dropout d4
      -> Dense 5 softmax

Every conv and dense layer uses ReLU (the output: softmax) and the same L2
kernel regulariser, so that the searched ``l2_reg`` reaches the whole network.

The five dropout rates come as one of the seed's named schedules
(``DROPOUT_SCHEDULES``) or as an explicit 5-tuple.
"""

from __future__ import annotations

import logging
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

import keras

from shared.actions import NUM_ACTIONS
from shared.errors import ConfigError
from shared.frames import FRAME_SHAPE

log = logging.getLogger(__name__)

#: The seed's dropout schedules: rates (d0, d1, d2, d3, d4) from the input
#: dropout to the head's dropout. ``low``/``mid``/``high`` are flat levels with
#: a little more in the head; ``up`` rises towards the head, ``down`` falls.
DROPOUT_SCHEDULES: dict[str, tuple[float, float, float, float, float]] = {
    "low": (0.0, 0.1, 0.1, 0.1, 0.2),
    "mid": (0.1, 0.2, 0.2, 0.2, 0.3),
    "high": (0.2, 0.3, 0.3, 0.4, 0.5),
    "up": (0.0, 0.1, 0.2, 0.3, 0.5),
    "down": (0.3, 0.25, 0.2, 0.1, 0.0),
}

#: Optimizer names (lower case) and their Keras classes.
OPTIMIZERS: dict[str, type[keras.optimizers.Optimizer]] = {
    "rmsprop": keras.optimizers.RMSprop,
    "adagrad": keras.optimizers.Adagrad,
    "adadelta": keras.optimizers.Adadelta,
    "adam": keras.optimizers.Adam,
}

HEADS = ("dk", "fc256")
PADDINGS = ("same", "valid")
#: Pixel scaling of the first layer: [0, 1] or [-1, 1].
PIXEL_SCALES = ("unit", "signed")


@dataclass
class ModelParams:
    """One configuration of the network and its training.

    These are the parameters a search varies (or a user sets for
    ``trainer train``); ``to_dict`` is what trial records and model cards keep.
    """

    learning_rate: float = 1e-3
    l2_reg: float = 1e-5
    batch_size: int = 32
    #: A schedule name from ``DROPOUT_SCHEDULES`` or five rates in [0, 1).
    dropouts: str | tuple[float, ...] = "mid"
    optimizer: str = "adam"
    head: str = "dk"
    padding: str = "same"
    pixel_scale: str = "unit"

    def __post_init__(self) -> None:
        self.learning_rate = _as_float(self.learning_rate, "learning_rate")
        self.l2_reg = _as_float(self.l2_reg, "l2_reg")
        self.batch_size = _as_int(self.batch_size, "batch_size")
        if not isinstance(self.dropouts, str):
            self.dropouts = resolve_dropouts(self.dropouts)
        self.validate()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelParams:
        """Build from plain data (a trial's params, a JSON file, CLI flags).

        Raises:
            ConfigError: a key is unknown or a value is out of range.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"model parameters must be a mapping, got {data!r}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown model parameter {unknown[0]!r}; "
                f"known parameters: {', '.join(known)}"
            )
        values = dict(data)
        for name in ("optimizer", "head", "padding", "pixel_scale", "dropouts"):
            if isinstance(values.get(name), str):
                values[name] = values[name].strip().lower()
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; ``from_dict(to_dict())`` gives the same."""
        data = asdict(self)
        if isinstance(self.dropouts, tuple):
            data["dropouts"] = list(self.dropouts)
        return data

    @property
    def dropout_rates(self) -> tuple[float, float, float, float, float]:
        """The five rates (d0..d4) this configuration uses."""
        return resolve_dropouts(self.dropouts)

    def validate(self) -> None:
        """Check every value.

        Raises:
            ConfigError: a value is out of range or names nothing known.
        """
        if not self.learning_rate > 0:
            raise ConfigError(
                f"learning_rate {self.learning_rate!r} must be a positive number"
            )
        if not self.l2_reg >= 0:
            raise ConfigError(f"l2_reg {self.l2_reg!r} must be a number >= 0")
        if not self.batch_size >= 1:
            raise ConfigError(f"batch_size {self.batch_size!r} must be an integer >= 1")
        resolve_dropouts(self.dropouts)
        _check_choice("optimizer", self.optimizer, tuple(OPTIMIZERS))
        _check_choice("head", self.head, HEADS)
        _check_choice("padding", self.padding, PADDINGS)
        _check_choice("pixel_scale", self.pixel_scale, PIXEL_SCALES)


def resolve_dropouts(
    dropouts: str | tuple[float, ...] | list[float],
) -> tuple[float, float, float, float, float]:
    """The five dropout rates of a schedule name or an explicit sequence.

    Raises:
        ConfigError: the name is unknown or the rates are not five in [0, 1).
    """
    if isinstance(dropouts, str):
        try:
            return DROPOUT_SCHEDULES[dropouts]
        except KeyError:
            raise ConfigError(
                f"unknown dropout schedule {dropouts!r}; use one of "
                f"{', '.join(DROPOUT_SCHEDULES)} or five rates in [0, 1)"
            ) from None
    try:
        rates = tuple(float(rate) for rate in dropouts)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"dropouts {dropouts!r} must be a schedule name or five rates"
        ) from err
    if len(rates) != 5 or not all(0.0 <= rate < 1.0 for rate in rates):
        raise ConfigError(
            f"dropouts {dropouts!r} must be five rates in [0, 1), "
            "one per dropout layer (d0..d4)"
        )
    return rates  # type: ignore[return-value]


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """A fresh optimizer by its name (case-insensitive).

    Raises:
        ConfigError: the name is not one of ``OPTIMIZERS``.
    """
    key = name.strip().lower()
    _check_choice("optimizer", key, tuple(OPTIMIZERS))
    return OPTIMIZERS[key](learning_rate=learning_rate)


def build_model(params: ModelParams, *, compile_model: bool = True) -> keras.Model:
    """Build (and by default compile) the drive CNN for ``params``.

    The model's input is ``FRAME_SHAPE`` uint8; its output is the softmax over
    the ``NUM_ACTIONS`` actions in class-id order.
    """
    d0, d1, d2, d3, d4 = params.dropout_rates
    l2 = params.l2_reg
    pad = params.padding

    def conv(filters: int, size: int, stride: int, name: str) -> keras.layers.Layer:
        return keras.layers.Conv2D(
            filters,
            size,
            strides=stride,
            padding=pad,
            activation="relu",
            kernel_regularizer=keras.regularizers.L2(l2),
            name=name,
        )

    def dense(units: int, name: str, activation: str = "relu") -> keras.layers.Layer:
        return keras.layers.Dense(
            units,
            activation=activation,
            kernel_regularizer=keras.regularizers.L2(l2),
            name=name,
        )

    # Pixels: uint8 in, scaled inside the model.
    frames = keras.Input(shape=FRAME_SHAPE, dtype="uint8", name="frame")
    if params.pixel_scale == "unit":
        x = keras.layers.Rescaling(1.0 / 255.0, name="scale")(frames)
    else:
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(frames)

    # Convolutions: 120 -> 60 -> 30 -> 15 -> 8 -> 8 px with "same" padding.
    x = keras.layers.Dropout(d0, name="dropout0")(x)
    x = conv(24, 5, 2, "conv1")(x)
    x = conv(32, 5, 2, "conv2")(x)
    x = keras.layers.Dropout(d1, name="dropout1")(x)
    x = conv(64, 5, 2, "conv3")(x)
    x = keras.layers.Dropout(d2, name="dropout2")(x)
    x = conv(64, 3, 2, "conv4")(x)
    x = conv(64, 3, 1, "conv5")(x)
    x = keras.layers.Dropout(d3, name="dropout3")(x)
    x = keras.layers.Flatten(name="flatten")(x)

    # Head.
    if params.head == "dk":
        x = dense(100, "dense1")(x)
        x = keras.layers.Dropout(d4, name="dropout4")(x)
        x = dense(50, "dense2")(x)
    else:
        x = dense(256, "dense1")(x)
        x = keras.layers.Dropout(d4, name="dropout4")(x)
    actions = dense(NUM_ACTIONS, "action", activation="softmax")(x)

    model = keras.Model(frames, actions, name=f"malpi_{params.head}")
    if compile_model:
        model.compile(
            optimizer=make_optimizer(params.optimizer, params.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    return model


def _check_choice(name: str, value: object, known: tuple[str, ...]) -> None:
    if value not in known:
        raise ConfigError(f"unknown {name} {value!r}; use one of {', '.join(known)}")


def _as_int(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name} {value!r} must be an integer")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(value)
    raise ConfigError(f"{name} {value!r} must be an integer")


def _as_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} {value!r} must be a number")
    return float(value)
