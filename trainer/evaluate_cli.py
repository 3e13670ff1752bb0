"""``trainer evaluate``: let an exported model drive the simulator, beside the
expert, and print how both did.

Only the car's own runtime is used (``robot.pilot`` and ``robot.sim``), so
the command starts without TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from shared.cli import add_command
from shared.errors import ConfigError
from shared.modelcard import write_atomic

log = logging.getLogger(__name__)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``evaluate``."""
    parser = add_command(
        subparsers,
        "evaluate",
        _evaluate,
        "Drive an exported model round simulated tracks, beside the expert: "
        "laps, departures, distance from the centre line.",
        "trainer evaluate --sim --model searches/demo/export/int8 "
        "--tracks oval,figure8,random:7 --seeds 1,2 --minutes 1 --gif run.gif",
    )
    parser.add_argument(
        "--sim",
        action="store_true",
        required=True,
        help="evaluate on the simulator (the only evaluation there is)",
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--model",
        help="model.tflite, its folder, or a search folder (its int8 export, "
        "else float32)",
    )
    model.add_argument(
        "--expert-only", action="store_true", help="drive the expert alone"
    )
    parser.add_argument(
        "--tracks",
        default="oval,figure8,random:7",
        help="shapes, each optionally :SEED (default oval,figure8,random:7)",
    )
    parser.add_argument(
        "--seeds",
        default="0",
        help="worlds for each track without its own seed (default 0)",
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument(
        "--minutes", type=float, help="simulated minutes per track (default 1)"
    )
    length.add_argument(
        "--laps",
        type=int,
        help="drive as long as the expert needs for N laps, plus a quarter",
    )
    parser.add_argument(
        "--rate", type=float, help="control rate in Hz (default: the drive loop's)"
    )
    parser.add_argument("--gif", type=Path, help="write an animated GIF of each run")
    parser.add_argument(
        "--gif-every",
        type=int,
        default=4,
        metavar="N",
        help="keep every N-th frame in the GIF (default 4)",
    )
    parser.add_argument("--json", type=Path, help="also save the results as JSON")
    parser.add_argument("--sim-config", help="simulator settings (TOML)")
    parser.add_argument(
        "--camera-pitch", type=float, help="camera down-tilt in degrees"
    )
    parser.add_argument(
        "--camera-height", type=float, help="camera height above the floor in m"
    )


def _evaluate(args: argparse.Namespace) -> int:
    from trainer.evaluate import (
        evaluate_model,
        format_table,
        parse_seeds,
        parse_tracks,
        sim_config,
    )

    # Check the arguments before anything slow.
    specs = parse_tracks(args.tracks, parse_seeds(args.seeds))
    if args.minutes is not None and not args.minutes > 0:
        raise ConfigError(f"--minutes {args.minutes!r} must be positive, e.g. 1")
    if args.gif is not None and args.gif.suffix.lower() != ".gif":
        raise ConfigError(f"--gif {str(args.gif)!r} must name a .gif file")
    config = sim_config(
        args.sim_config,
        camera_pitch_deg=args.camera_pitch,
        camera_height_m=args.camera_height,
    )
    minutes = 1.0 if args.minutes is None else args.minutes
    if not args.debug:
        # Each run's summary is printed below; the simulator's log says it again.
        logging.getLogger("robot.sim.evaluate").setLevel(logging.WARNING)

    def progress(result) -> None:
        for run in (result.model, result.expert):
            if run is not None:
                driver = "model " if run is result.model else "expert"
                print(f"{driver} {run.summary()}", flush=True)

    results = evaluate_model(
        None if args.expert_only else args.model,
        specs,
        duration_s=minutes * 60.0,
        laps=args.laps,
        rate_hz=args.rate,
        config=config,
        gif=args.gif,
        gif_every=args.gif_every,
        on_result=progress,
    )
    print()
    print(format_table(results))
    for result in results:
        if result.gif_path is not None:
            print(f"gif: {result.gif_path}")
    if args.json is not None:
        data = {
            "model": args.model,
            "rate_hz": results[0].expert.rate_hz,
            "results": [result.to_dict() for result in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.json, (json.dumps(data, indent=2) + "\n").encode())
        print(f"saved {args.json}")
    return 0
