"""Datasets, label conventions, mappers and samplers."""
