"""No patient identifier from DICOM headers leaks into what a run writes or logs.

A tiny COVIDx folder of DICOMs whose headers carry a PatientName, PatientID, PatientBirthDate and
AccessionNumber of their own (none equal to the split files' patient column, which is the dataset's
own pseudonym and is meant to appear) is audited through the CLI. Every byte the run leaves behind is
searched for those strings: the run folder (report.html, summary.md, tables, manifest, checkpoints,
Prefect's persisted results), the Prefect home (its database holds the artifacts and the flow's logs)
and the CLI's stdout and stderr. The only files allowed to hold them are the DICOM images of the
COVIDx++ copy, which keep their source headers as a faithful copy of the dataset must.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from benchmarks.common import TINY, tiny_yaml
from datasets.images import read_image
from datasets.synthetic import SPLIT_FILES, generate

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("flow-runs")]  # one worker runs every flow run
BIN = Path(sys.executable).parent
DX = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


def identifiers(index: int) -> dict[str, str]:
    """The header values of image `index`: distinct per image, and unlike anything the pipeline writes."""
    return {"PatientName": f"Zyxwqv^Secretname{index:03d}", "PatientID": f"MRN-SECRET-{index:05d}",
            "PatientBirthDate": "18991231", "AccessionNumber": f"ACCSECRET{index:05d}"}


def to_dicom(png: Path, index: int) -> Path:
    """Write the PNG's pixels as an 8-bit MONOCHROME2 DX DICOM with identifying headers; delete the PNG."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = DX, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "DX"
    for keyword, value in identifiers(index).items():
        setattr(ds, keyword, value)
    pixels = np.round(read_image(png) * 255).astype(np.uint8)
    ds.set_pixel_data(pixels, "MONOCHROME2", 8)
    out = png.with_suffix(".dcm")
    ds.save_as(out, enforce_file_format=True)
    png.unlink()
    return out


def dicom_covidx(root: Path) -> Path:
    """The tiny synthetic dataset with every train and test image turned into a DICOM (split files follow)."""
    synthetic = TINY["data.synthetic"]
    generate(root, n_train=synthetic["n_train"], n_test=synthetic["n_test"], image_size=synthetic["image_size"],
             seed=synthetic["seed"])
    index = 0
    for split in ("train", "test"):
        split_file = root / SPLIT_FILES[split]
        lines = []
        for line in split_file.read_text().splitlines():
            patient, filename, *rest = line.split()
            if (root / split / filename).is_file():
                to_dicom(root / split / filename, index)
                index += 1
            lines.append(" ".join([patient, str(Path(filename).with_suffix(".dcm")), *rest]))
        split_file.write_text("\n".join(lines) + "\n")
    return root


def test_no_dicom_identifier_in_any_output_artifact_or_log(prefect_server, tmp_path):
    data = dicom_covidx(tmp_path / "covidx")
    # Every full value, and the name's parts (a report could print "Secretname000 Zyxwqv").
    secrets = {value for index in range(200) for value in identifiers(index).values()} | {"Zyxwqv", "Secretname"}
    header = pydicom.dcmread(next((data / "test").glob("*.dcm")))
    assert str(header.PatientName).startswith("Zyxwqv^") and header.AccessionNumber.startswith("ACCSECRET")

    config_file = tiny_yaml(tmp_path / "tiny.yaml", leave_out=["data.synthetic"])  # a real folder, not generated
    home, run_dir = tmp_path / "prefect-home", tmp_path / "run"
    env = {**os.environ, "PREFECT_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("PREFECT_API_URL", None)  # the CLI's own ephemeral Prefect: its database lands in `home`
    result = subprocess.run([str(BIN / "cxr-audit"), "run", "--data", str(data), "--train-split",
                             SPLIT_FILES["train"], "--test-split", SPLIT_FILES["test"], "--out", str(run_dir),
                             "--config", str(config_file)], env=env, capture_output=True, text=True, timeout=900,
                            cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stderr[-3000:]

    copies = {path for path in (run_dir / "covidx_pp").rglob("*.dcm")}
    assert copies, "the COVIDx++ copy should hold DICOMs"
    searched = [path for folder in (run_dir, home) for path in folder.rglob("*")
                if path.is_file() and path not in copies]
    assert {"report.html", "summary.md", "manifest.csv", "summary.json"} <= {path.name for path in searched}
    assert any(path.suffix == ".db" for path in searched), "Prefect's database (artifacts, logs) should be searched"
    leaks = [(str(path.relative_to(tmp_path)), secret) for path in searched for secret in secrets
             if secret.encode() in path.read_bytes()]
    leaks += [("CLI output", secret) for secret in secrets if secret in result.stdout + result.stderr]
    assert leaks == []
    # The copies do carry them: the search above would have found a header that was read into an output.
    assert any(b"MRN-SECRET-" in path.read_bytes() for path in copies)
