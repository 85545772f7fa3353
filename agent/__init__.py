"""aftercare agent: samples host health, spools it on disk and streams it to the collector."""

__version__ = "0.1.0"
