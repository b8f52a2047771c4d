"""Test suite; a package so that shared helpers (``tests.fakes``) import by name."""
