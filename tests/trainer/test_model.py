"""The drive CNN: hyperparameters reach the layers, input is the raw frame."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from shared.actions import NUM_ACTIONS
from shared.errors import ConfigError
from shared.frames import FRAME_SHAPE
from trainer.model import (
    DROPOUT_SCHEDULES,
    HEADS,
    ModelParams,
    build_model,
    make_optimizer,
    resolve_dropouts,
)


def _weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
    ]


@pytest.mark.parametrize("head", HEADS)
def test_build_model_l2_reaches_every_conv_and_dense_layer(head: str) -> None:
    model = build_model(ModelParams(l2_reg=3.5e-4, head=head))

    layers = _weighted_layers(model)

    assert len(layers) == (8 if head == "dk" else 7)
    for layer in layers:
        regularizer = layer.kernel_regularizer
        assert isinstance(regularizer, keras.regularizers.L2), layer.name
        assert regularizer.l2 == pytest.approx(3.5e-4), layer.name


@pytest.mark.parametrize("head", HEADS)
def test_build_model_dropout_rates_reach_the_layers(head: str) -> None:
    rates = (0.05, 0.15, 0.25, 0.35, 0.45)

    model = build_model(ModelParams(dropouts=rates, head=head))

    dropouts = [
        layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)
    ]
    assert [layer.name for layer in dropouts] == [f"dropout{i}" for i in range(5)]
    assert [layer.rate for layer in dropouts] == pytest.approx(rates)


def test_build_model_named_schedule_sets_its_rates() -> None:
    model = build_model(ModelParams(dropouts="up"))

    rates = [model.get_layer(f"dropout{i}").rate for i in range(5)]

    assert rates == pytest.approx(DROPOUT_SCHEDULES["up"])


def test_dropout_schedules_up_rises_and_down_falls() -> None:
    up, down = DROPOUT_SCHEDULES["up"], DROPOUT_SCHEDULES["down"]

    assert list(up) == sorted(up) and up[0] < up[-1]
    assert list(down) == sorted(down, reverse=True) and down[0] > down[-1]
    assert set(DROPOUT_SCHEDULES) == {"low", "mid", "high", "up", "down"}


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_build_model_takes_uint8_frames_and_gives_a_softmax(padding: str) -> None:
    model = build_model(ModelParams(padding=padding))
    frames = np.random.default_rng(0).integers(0, 256, (3, *FRAME_SHAPE), np.uint8)

    probabilities = model.predict(frames, verbose=0)

    assert model.input.dtype == "uint8"
    assert tuple(model.input.shape[1:]) == FRAME_SHAPE
    assert probabilities.shape == (3, NUM_ACTIONS)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert model.get_layer("conv1").padding == padding


@pytest.mark.parametrize(("scale", "low", "high"), [("unit", 0, 1), ("signed", -1, 1)])
def test_build_model_scales_pixels_in_its_first_layer(
    scale: str, low: float, high: float
) -> None:
    model = build_model(ModelParams(pixel_scale=scale))
    scaler = keras.Model(model.input, model.get_layer("scale").output)

    out = scaler.predict(
        np.array([np.zeros(FRAME_SHAPE), np.full(FRAME_SHAPE, 255)], np.uint8),
        verbose=0,
    )

    assert out[0].min() == pytest.approx(low)
    assert out[1].max() == pytest.approx(high)


@pytest.mark.parametrize("name", ["RMSprop", "adagrad", "Adadelta", "ADAM"])
def test_make_optimizer_by_name_with_learning_rate(name: str) -> None:
    optimizer = make_optimizer(name, 0.0025)

    assert type(optimizer).__name__.lower() == name.lower()
    assert float(optimizer.learning_rate) == pytest.approx(0.0025)


def test_build_model_compiles_with_the_chosen_optimizer() -> None:
    model = build_model(ModelParams(optimizer="adagrad", learning_rate=0.01))

    assert isinstance(model.optimizer, keras.optimizers.Adagrad)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)


def test_model_params_from_dict_round_trips_and_coerces() -> None:
    params = ModelParams.from_dict(
        {"batch_size": 17.0, "optimizer": "Adam", "dropouts": [0, 0, 0.1, 0.1, 0.2]}
    )

    assert params.batch_size == 17
    assert params.optimizer == "adam"
    assert ModelParams.from_dict(params.to_dict()) == params


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"learning_rte": 0.1}, "unknown model parameter 'learning_rte'"),
        ({"optimizer": "sgd"}, "unknown optimizer 'sgd'"),
        ({"dropouts": "huge"}, "unknown dropout schedule 'huge'"),
        ({"dropouts": [0.1, 0.2]}, "five rates"),
        ({"batch_size": 0}, "batch_size 0"),
        ({"learning_rate": -1}, "learning_rate -1.0"),
        ({"head": "big"}, "unknown head 'big'"),
    ],
)
def test_model_params_bad_values_raise_config_error(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        ModelParams.from_dict(data)


def test_resolve_dropouts_rejects_a_rate_of_one() -> None:
    with pytest.raises(ConfigError, match=r"in \[0, 1\)"):
        resolve_dropouts((0.0, 0.0, 0.0, 0.0, 1.0))
