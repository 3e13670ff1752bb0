"""DonkeyCar tub v2 import: the real tub, the mapping and damaged tubs."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from shared.actions import Action
from shared.donkey import DonkeyMapping, Tub, import_tub
from shared.drives import Drive
from shared.errors import ConfigError, ImportDataError
from shared.frames import FRAME_SHAPE, decode_jpeg

#: What the default mapping (angle 0.3, throttle 0.1) makes of the real tub.
#: Hard-coded so that a silent change of the mapping or of the reader shows.
REAL_TUB_COUNTS = {"stop": 0, "forward": 466, "left": 129, "right": 405, "backward": 0}


def _expected_counts(tub: Path, angle: float, throttle: float) -> dict[str, int]:
    """Count actions straight from the catalog, independently of shared.donkey."""
    counts = dict.fromkeys(REAL_TUB_COUNTS, 0)
    for line in (tub / "catalog_0.catalog").read_text().splitlines():
        record = json.loads(line)
        a, t = record["user/angle"], record["user/throttle"]
        if -throttle < t < throttle:
            counts["stop"] += 1
        elif t < 0:
            counts["backward"] += 1
        elif a < -angle:
            counts["left"] += 1
        elif a > angle:
            counts["right"] += 1
        else:
            counts["forward"] += 1
    return counts


def _tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _small_tub(source: Path, dest: Path, records: int = 12) -> Path:
    """A writable tub of the real tub's first ``records`` records."""
    (dest / "images").mkdir(parents=True)
    shutil.copy(source / "manifest.json", dest / "manifest.json")
    shutil.copy(source / "._catalog_0.catalog", dest / "._catalog_0.catalog")
    lines = (source / "catalog_0.catalog").read_text().splitlines()[:records]
    (dest / "catalog_0.catalog").write_text("\n".join(lines) + "\n")
    for line in lines:
        name = json.loads(line)["cam/image_array"]
        shutil.copy(source / "images" / name, dest / "images" / name)
    return dest


def test_donkey_import_of_the_real_tub(donkey_tub: Path, tmp_drives: Path) -> None:
    """1,000 frames of 120x120, counted as the stated mapping says."""
    result = import_tub(donkey_tub, tmp_drives)

    drive = Drive.open(result.path)
    images, actions, indices = drive.load_all()
    assert images.shape == (1000, *FRAME_SHAPE)
    assert drive.report.skipped == 0 and result.report.skipped == 0
    assert indices.tolist() == list(range(1000))
    counts = {a.label: int((actions == a).sum()) for a in Action}
    assert counts == _expected_counts(donkey_tub, 0.3, 0.1)
    assert counts == REAL_TUB_COUNTS == result.counts
    assert drive.meta["config"]["donkey_mapping"]["angle_threshold"] == 0.3


def test_donkey_import_frames_are_the_centre_crop(
    donkey_tub: Path, tmp_drives: Path
) -> None:
    path = import_tub(
        _small_tub(donkey_tub, tmp_drives.parent / "tub", 3), tmp_drives
    ).path
    drive = Drive.open(path)
    source = decode_jpeg(donkey_tub / "images" / "1_cam_image_array_.jpg")
    assert source.shape == (120, 160, 3)
    crop = source[:, 20:140].astype(np.int16)
    error = np.abs(drive.load(drive.records[1]).astype(np.int16) - crop)
    assert error.mean() < 4  # one more JPEG generation of a detailed photo
    assert [r.t_mono_s for r in drive] == [
        1602421393.803,
        1602421393.808,
        1602421393.811,
    ]


@pytest.mark.parametrize(("angle", "throttle"), [(0.1, 0.1), (0.5, 0.6), (0.0, 0.5)])
def test_donkey_import_honours_the_thresholds(
    donkey_tub: Path, tmp_drives: Path, angle: float, throttle: float
) -> None:
    small = _small_tub(donkey_tub, tmp_drives.parent / "tub", 200)
    mapping = DonkeyMapping(angle_threshold=angle, throttle_stop=throttle)
    result = import_tub(small, tmp_drives, mapping=mapping)
    assert result.counts == _expected_counts(small, angle, throttle)
    assert sum(result.counts.values()) == 200


def test_donkey_mapping_rules() -> None:
    mapping = DonkeyMapping(angle_threshold=0.3, throttle_stop=0.1)
    assert mapping.action(0.9, 0.05) == Action.STOP
    assert mapping.action(0.0, -0.09) == Action.STOP
    assert mapping.action(-0.9, -0.5) == Action.BACKWARD
    assert mapping.action(-0.31, 0.5) == Action.LEFT
    assert mapping.action(0.31, 0.5) == Action.RIGHT
    assert mapping.action(0.3, 0.5) == Action.FORWARD
    assert mapping.action(-0.3, 0.1) == Action.FORWARD
    assert "angle > 0.3" in mapping.describe()


@pytest.mark.parametrize("bad", [-0.1, 1.0, float("nan"), "0.3", True])
def test_donkey_mapping_refuses_bad_thresholds(bad: object) -> None:
    with pytest.raises(ConfigError, match="angle_threshold"):
        DonkeyMapping(angle_threshold=bad)  # type: ignore[arg-type]


def test_donkey_import_never_writes_into_the_tub(
    donkey_tub: Path, tmp_path: Path
) -> None:
    tub = _small_tub(donkey_tub, tmp_path / "tub")
    before = _tree_digest(tub)
    import_tub(tub, tmp_path / "drives")
    with pytest.raises(ImportDataError, match="inside the tub"):
        import_tub(tub, tub / "drives")
    assert _tree_digest(tub) == before


def test_donkey_import_refuses_an_existing_drive(
    donkey_tub: Path, tmp_drives: Path
) -> None:
    tub = _small_tub(donkey_tub, tmp_drives.parent / "tub", 3)
    import_tub(tub, tmp_drives)
    with pytest.raises(ImportDataError, match="exists already"):
        import_tub(tub, tmp_drives)
    assert [p.name for p in tmp_drives.iterdir()] == ["tub"]


def test_donkey_import_counts_damaged_records(donkey_tub: Path, tmp_path: Path) -> None:
    """Bad lines, missing and corrupt images are counted; the rest imports."""
    tub = _small_tub(donkey_tub, tmp_path / "tub", 12)
    lines = (tub / "catalog_0.catalog").read_text().splitlines()
    lines[2] = lines[2][:40]
    lines[5] = lines[5].replace('"user/angle": ', '"user/angle": "x", "a": ')
    lines[7] = lines[7].replace('"user"', '"local"')
    (tub / "catalog_0.catalog").write_text("\n".join(lines) + "\n")
    (tub / "images" / "3_cam_image_array_.jpg").unlink()
    (tub / "images" / "4_cam_image_array_.jpg").write_bytes(b"\xff\xd8 broken")
    manifest = (tub / "manifest.json").read_text().splitlines()
    catalogs = json.loads(manifest[4])
    catalogs["deleted_indexes"] = [9, 10]
    catalogs["paths"].append("catalog_1.catalog")
    manifest[4] = json.dumps(catalogs)
    (tub / "manifest.json").write_text("\n".join(manifest) + "\n")

    result = import_tub(tub, tmp_path / "drives")

    report = result.report
    assert (report.bad_lines, report.bad_values, report.pilot_frames) == (1, 1, 1)
    assert (report.missing_images, report.corrupt_images) == (1, 1)
    assert report.deleted == 2 and report.imported == 5
    assert report.missing_catalogs == 1
    assert "2 deleted in the tub" in report.summary()
    drive = Drive.open(result.path)
    assert len(drive) == 5 and drive.verify().skipped == 0


def test_donkey_tub_ignores_macos_junk(donkey_tub: Path) -> None:
    tub = Tub.open(donkey_tub)
    assert [p.name for p in tub.catalogs] == ["catalog_0.catalog"]
    assert tub.image_key == "cam/image_array"


def test_donkey_tub_without_catalog_paths_finds_catalogs(
    donkey_tub: Path, tmp_path: Path
) -> None:
    tub = _small_tub(donkey_tub, tmp_path / "tub", 5)
    manifest = (tub / "manifest.json").read_text().splitlines()
    (tub / "manifest.json").write_text("\n".join(manifest[:2]) + "\n")
    assert [p.name for p in Tub.open(tub).catalogs] == ["catalog_0.catalog"]
    assert import_tub(tub, tmp_path / "drives").report.imported == 5


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no manifest.json"),
        (lambda p: (p / "drive.json").write_text("{}"), "MaLPi drive already"),
        (lambda p: (p / "record_1.json").write_text("{}"), "tub v1"),
        (
            lambda p: (p / "manifest.json").write_text("{not json"),
            "manifest is damaged",
        ),
        (lambda p: (p / "manifest.json").write_text('{"a": 1}\n'), "inputs and types"),
    ],
    ids=["empty", "drive", "tub-v1", "bad-json", "not-a-manifest"],
)
def test_donkey_import_refuses_a_folder_that_is_not_a_tub(
    tmp_path: Path, setup, message: str
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    setup(source)
    with pytest.raises(ImportDataError, match=message) as caught:
        import_tub(source, tmp_path / "drives")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "drives").exists() or not any(
        (tmp_path / "drives").iterdir()
    )


def test_donkey_import_with_nothing_usable_makes_no_drive(
    donkey_tub: Path, tmp_path: Path
) -> None:
    tub = _small_tub(donkey_tub, tmp_path / "tub", 3)
    shutil.rmtree(tub / "images")
    with pytest.raises(ImportDataError, match="3 missing images"):
        import_tub(tub, tmp_path / "drives")
    assert list((tmp_path / "drives").iterdir()) == []
