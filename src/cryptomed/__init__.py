"""cryptomed: AES-256-GCM protected medical-image classification.

Modules
-------
datasets   what each supported dataset is and where it comes from
download   fetching raw data (upstream or a local mirror) with checksum verification
data       decoding, resizing, de-duplication and splitting (preprocess)
crypto     keys and the AES-256-GCM record container (encrypt / decrypt)
models     the Keras 3 CNN, backend selection and training
metrics    classification metrics with bootstrap confidence intervals
reporting  the comparison table in the paper's format
files      atomic writes and hashing shared by all stages
"""

__version__ = "0.1.0"


class CryptomedError(Exception):
    """Base class of every error cryptomed raises on bad input."""
