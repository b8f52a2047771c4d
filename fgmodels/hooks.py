"""Training hooks (placeholder: the real module comes with the training-loop work).

``hook_keys`` lists the extra config keys that installed hooks declare; none here.
"""
from __future__ import annotations


def hook_keys() -> dict:
    """{key: default} of the config keys that installed training hooks add."""
    return {}
