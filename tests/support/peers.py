"""Fixtures for real DICOM peers; written by the harness work."""
