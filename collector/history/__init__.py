"""Downsampled metric history per host: what quarter trends and capacity forecasts read.

``model.py`` holds the records shared by the store (which writes and rolls up the
buckets) and by the inspection analysis (which reads them). See docs/metric-history.md.
"""
