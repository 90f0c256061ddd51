"""saerand: SAEs on trained and randomly initialised transformers (Heap et al. 2025)."""

__version__ = "0.1.0"
