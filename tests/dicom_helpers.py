"""DICOM files built in the tests (pydicom), with a recognisable patient in every identifying header field."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PATIENT = {  # grep targets: none may appear in any output
    "PatientName": "Zyxwvut^Quintessa",
    "PatientID": "PID-QX-904417",
    "PatientBirthDate": "19410307",
    "InstitutionName": "Saint Quillon Infirmary",
    "StudyDescription": "follow-up of Quintessa Zyxwvut",
    "AccessionNumber": "ACC77419",
}


def write_dicom(path: Path, pixels: np.ndarray, patient_id: str = PATIENT["PatientID"], photometric="MONOCHROME2",
                bits_stored: int = 12, slope: float | None = None, intercept: float | None = None,
                window: tuple[float, float] | None = None, frames: bool = False) -> Path:
    """A DICOM file of ``pixels`` (uint16; frames first when ``frames``) with the PATIENT header fields."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    for key, value in PATIENT.items():
        setattr(ds, key, value)
    ds.PatientID = patient_id
    ds.set_pixel_data(np.asarray(pixels, dtype=np.uint16), photometric, bits_stored)
    if frames:
        ds.NumberOfFrames = len(pixels)
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept or 0, "US"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def dicom_folder(root: Path, n_patients: int = 12, per_patient: int = 2, size: int = 24, seed: int = 0) -> Path:
    """``root/<class>/<n>.dcm``: two classes told apart by brightness, ``per_patient`` images per patient, every
    patient with the recognisable name and its own id (``PID-QX-904417-<k>``)."""
    rng = np.random.default_rng(seed)
    n = 0
    for k in range(n_patients):
        cls = ("normal", "lesion")[k % 2]
        for _ in range(per_patient):
            base = 600 if cls == "normal" else 2600
            pixels = np.clip(rng.normal(base, 500, (size, size)), 0, 4095)
            write_dicom(root / cls / f"{n:04d}.dcm", pixels, patient_id=f"{PATIENT['PatientID']}-{k}",
                        window=(2048, 4096))
            n += 1
    return root
