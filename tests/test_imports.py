"""The car, deploy and the shared package never import TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Imports every module of the given packages, skipping only those whose
#: optional hardware library (picamera2, OpenCV, the Motor HAT) is absent,
#: then prints the heavy frameworks that got imported.
PROBE = """
import importlib, pkgutil, sys
skipped = []
for name in sys.argv[1:]:
    package = importlib.import_module(name)
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as err:
            if err.name and err.name.split(".")[0] in {name, "shared"}:
                raise
            skipped.append(f"{info.name} needs {err.name}")
heavy = sorted(
    m for m in sys.modules if m.split(".")[0] in {"tensorflow", "keras", "tf_keras"}
)
print("heavy:", ",".join(heavy))
print("skipped:", "; ".join(skipped))
"""


def _imported_frameworks(*packages: str, probe: str = PROBE) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", probe, *packages],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    heavy_line = next(x for x in done.stdout.splitlines() if x.startswith("heavy:"))
    return [m for m in heavy_line.removeprefix("heavy:").strip().split(",") if m]


@pytest.mark.parametrize("package", ["shared", "robot", "deploy"])
def test_imports_package_never_imports_tensorflow(package: str) -> None:
    """Every module of the car's and the shared packages imports without TF."""
    assert _imported_frameworks(package) == []


def test_imports_trainer_cli_starts_without_tensorflow() -> None:
    """``trainer data`` must start at once: building the parser loads no TF."""
    probe = (
        "import sys\n"
        "from trainer.cli import build_parser\n"
        "build_parser().parse_args(['data', 'stats', 'x'])\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "{'tensorflow', 'keras'}]\n"
        "print('heavy:', ','.join(sorted(heavy)))\n"
    )
    assert _imported_frameworks(probe=probe) == []
