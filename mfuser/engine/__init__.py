"""Training / inference helpers for LazyConfig models."""
