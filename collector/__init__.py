"""aftercare collector: enrolment, ingest, store, API, metrics and the admin CLI."""

__version__ = "0.1.0"
