"""Helpers shared by the test folders (plain functions and values; the fixtures are in the conftest files)."""
