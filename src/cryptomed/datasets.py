"""What each supported dataset is, and where its bytes come from.

The mirror layout is the one of ``../shared/data`` (see its README): one
uncompressed tar of images per dataset plus a ``manifest.csv`` with one row per
tar member (``path, split, class_name, label, sha256, ...``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class UpstreamSource:
    """One real upstream distribution of a dataset."""

    kind: str  # "kaggle" or "zenodo"
    identifier: str  # Kaggle "owner/name" or a URL
    md5: str | None = None  # published checksum, where one exists
    note: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    classes: tuple[str, ...]  # index == label
    positive_class: str | None  # for binary sensitivity/specificity
    mirror_dir: str  # folder under the mirror root
    mirror_tar: str  # tar file inside mirror_dir
    upstream: dict[str, UpstreamSource] = field(default_factory=dict)
    citation: str = ""
    # Regular expression on the file name whose first group is the patient id (None: the names carry none).
    patient_pattern: str | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes)


DATASETS: dict[str, DatasetSpec] = {
    "chest_xray": DatasetSpec(
        name="chest_xray",
        title="Pediatric chest X-ray pneumonia (Kermany et al. 2018)",
        classes=("NORMAL", "PNEUMONIA"),
        positive_class="PNEUMONIA",
        mirror_dir="chest_xray_pneumonia",
        mirror_tar="chest_xray_pneumonia_224.tar",
        upstream={
            "kaggle": UpstreamSource(
                kind="kaggle",
                identifier="paultimothymooney/chest-xray-pneumonia",
                note="train 5,216 / val 16 / test 624; the 16 val images are folded back into train",
            ),
            "zenodo_pneumoniamnist": UpstreamSource(
                kind="zenodo",
                identifier="https://zenodo.org/records/10519652/files/pneumoniamnist_224.npz?download=1",
                md5="d6a3c71de1b945ea11211b03746c1fe1",
                note="PneumoniaMNIST 224x224 (MedMNIST+); its val split is folded back into train",
            ),
        },
        citation="Kermany et al., Cell 172(5):1122-1131, 2018, doi:10.1016/j.cell.2018.02.010",
        # person12_bacteria_3.jpeg, IM-0115-0001.jpeg, NORMAL2-IM-0135-0001.jpeg
        patient_pattern=r"^(person\d+|NORMAL\d+-IM-\d+|IM-\d+)[-_]",
    ),
    "brain_mri": DatasetSpec(
        name="brain_mri",
        title="Brain tumor MRI (Nickparvar 2021)",
        classes=("glioma", "meningioma", "notumor", "pituitary"),
        positive_class=None,
        mirror_dir="brain_tumor_mri",
        mirror_tar="brain_tumor_mri_128.tar",
        upstream={
            "kaggle": UpstreamSource(
                kind="kaggle",
                identifier="masoudnickparvar/brain-tumor-mri-dataset",
                note="Training 5,712 / Testing 1,311",
            ),
        },
        citation="Nickparvar M., Brain Tumor MRI Dataset, Kaggle 2021, doi:10.34740/KAGGLE/DSV/2645886",
    ),
}


def get_dataset(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def dataset_spec(name: str, config: dict | None = None) -> DatasetSpec:
    """A built-in dataset, or one of the configuration's ``custom_datasets`` (cryptomed.custom)."""
    custom = (config or {}).get("custom_datasets") or {}
    if name in custom and name not in DATASETS:
        from .custom import spec_of

        return spec_of(name, custom[name])
    return get_dataset(name)
