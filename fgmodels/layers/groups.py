"""Channel groups: which group counts G split C channels evenly (LGAM, CLCA)."""
from __future__ import annotations

from fgmodels.knobs import ConfigError


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def check_groups(channels: int, groups: int, where: str = "LGAM") -> None:
    """Raise a ConfigError naming C, G and the valid group counts if G does not divide C.

    Whether G fits depends on the backbone's channel counts, so this runs when the
    network is built, not when the config is read."""
    if isinstance(groups, bool) or int(groups) != groups or groups < 1:
        raise ConfigError(f"{where}: groups must be a positive integer, got {groups!r}. Fix: set groups >= 1.",
                          key="groups")
    if channels % groups:
        raise ConfigError(
            f"{where}: groups G={groups} does not divide the C={channels} channels; "
            f"valid values of G for C={channels} are {divisors(channels)}. Fix: pick one of them.",
            key="groups",
        )
