"""Adaptation methods: one sub-package per method (its config and its layers)."""
