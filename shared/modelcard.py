"""The model card: the JSON file that travels with every exported model.

A card says what the model expects (input shape and dtype, action labels in
order), how it was made (hyperparameters, training data digest, software
version), how good it is (metrics, TFLite-vs-Keras parity) and which bytes it
describes (the sha256 of the model file). The car refuses a model whose card
does not match its camera, its action set or the model's own bytes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared import __version__
from shared.actions import ACTION_LABELS
from shared.errors import ModelCardError
from shared.fileio import sha256_file, write_atomic
from shared.frames import FRAME_SHAPE

__all__ = ["ModelCard", "sha256_file", "write_atomic"]

CARD_FORMAT = 1
CARD_NAME = "model.json"
MODEL_NAME = "model.tflite"
INPUT_DTYPES = ("uint8", "float32")
QUANTIZATIONS = ("float32", "int8")


@dataclass
class ModelCard:
    """What a model expects, how it was made and which bytes it describes."""

    model_sha256: str
    input_shape: list[int] = field(default_factory=lambda: list(FRAME_SHAPE))
    input_dtype: str = "uint8"
    labels: list[str] = field(default_factory=lambda: list(ACTION_LABELS))
    quantization: str = "float32"
    model_file: str = MODEL_NAME
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    data_digest: str = ""
    software_version: str = __version__
    created: str = field(
        default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )
    format: int = CARD_FORMAT

    def validate(self) -> None:
        """Check the card's own fields.

        Raises:
            ModelCardError: a field is missing or out of range.
        """
        if self.format != CARD_FORMAT:
            raise ModelCardError(
                f"model card format {self.format!r} is not supported "
                f"(this MaLPi reads format {CARD_FORMAT}); re-export the model"
            )
        sha = self.model_sha256
        if not (
            isinstance(sha, str)
            and len(sha) == 64
            and all(c in "0123456789abcdef" for c in sha)
        ):
            raise ModelCardError(f"model_sha256 {sha!r} is not a sha256 hex digest")
        shape = self.input_shape
        if not (
            isinstance(shape, list)
            and len(shape) == 3
            and all(isinstance(n, int) and n > 0 for n in shape)
        ):
            raise ModelCardError(f"input_shape {shape!r} must be [height, width, 3]")
        if self.input_dtype not in INPUT_DTYPES:
            raise ModelCardError(
                f"input_dtype {self.input_dtype!r} is not one of {INPUT_DTYPES}"
            )
        if self.quantization not in QUANTIZATIONS:
            raise ModelCardError(
                f"quantization {self.quantization!r} is not one of {QUANTIZATIONS}"
            )
        if not isinstance(self.labels, list) or not all(
            isinstance(label, str) for label in self.labels
        ):
            raise ModelCardError(f"labels {self.labels!r} must be a list of names")
        if (
            not isinstance(self.model_file, str)
            or Path(self.model_file).name != self.model_file
            or self.model_file in ("", ".", "..")
        ):
            raise ModelCardError(
                f"model_file {self.model_file!r} must be a plain file name"
            )

    def check_compatible(
        self,
        frame_shape: tuple[int, ...] = FRAME_SHAPE,
        labels: tuple[str, ...] = ACTION_LABELS,
    ) -> None:
        """Check that this model fits a car with this camera and action set.

        Raises:
            ModelCardError: the input shape or the labels differ.
        """
        if tuple(self.input_shape) != tuple(frame_shape):
            raise ModelCardError(
                f"model input is {self.input_shape!r} but the camera gives "
                f"{list(frame_shape)!r}; export a model for "
                f"{'x'.join(map(str, frame_shape))} frames"
            )
        if tuple(self.labels) != tuple(labels):
            raise ModelCardError(
                f"model labels {self.labels!r} differ from the car's actions "
                f"{list(labels)!r}; train with this MaLPi's action set"
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the card atomically; ``path`` is the card file or its folder."""
        path = Path(path)
        if path.is_dir():
            path = path / CARD_NAME
        write_atomic(path, self.to_json().encode("utf-8"))
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        if not isinstance(data, dict):
            raise ModelCardError(f"a model card must be a JSON object, got {data!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelCardError(
                f"model card has unknown field {unknown[0]!r}; "
                f"known fields: {', '.join(sorted(known))}"
            )
        if "model_sha256" not in data:
            raise ModelCardError("model card has no model_sha256; re-export the model")
        card = cls(**data)
        card.validate()
        return card

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        """Read and validate a card; ``path`` is the card file or its folder.

        Raises:
            ModelCardError: the file is missing, not JSON or not a valid card.
        """
        path = Path(path)
        if path.is_dir():
            path = path / CARD_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ModelCardError(
                f"no model card at {str(path)!r}; every model needs its {CARD_NAME}"
            ) from err
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModelCardError(
                f"model card {str(path)!r} is not JSON: {err}"
            ) from err
        return cls.from_dict(data)

    def verify_model_file(self, model_path: str | Path) -> None:
        """Check that the model file's bytes are the ones this card describes.

        Raises:
            ModelCardError: the file is missing or its sha256 differs.
        """
        model_path = Path(model_path)
        if not model_path.is_file():
            raise ModelCardError(f"model file {str(model_path)!r} does not exist")
        actual = sha256_file(model_path)
        if actual != self.model_sha256:
            raise ModelCardError(
                f"model file {str(model_path)!r} has sha256 {actual[:12]}..., "
                f"its card says {self.model_sha256[:12]}...: the file is damaged "
                "or not the one the card was written for; copy or export it again"
            )
