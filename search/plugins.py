"""User plugins and test hooks reach every process through the environment.

A plugin is a Python file or an importable module that registers methods of
its own. The method registry imports the modules named in ``FGVC_PLUGINS``
(comma-separated) when it is first imported, in the driver and in every Ray
worker; test-only training hooks travel the same way in ``FGVC_HOOKS``. The
driver sets the variable before it loads the space or starts Ray, so local
workers inherit it, and :func:`search.tuner.init_ray` ships it to a cluster.
"""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from search.options import OptionError

_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def resolve_plugin(spec: str) -> str:
    """A file as an absolute path (trials run in other folders), a module as its name."""
    if spec.endswith(".py") or "/" in spec or os.sep in spec:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise OptionError(f"--plugin {spec}: no such Python file. Fix: give the path of a .py file "
                              f"or the name of an installed module")
        return str(path.resolve())
    if not _MODULE.match(spec):
        raise OptionError(f"--plugin {spec!r} is neither a .py file nor a module name. Fix: e.g. --plugin my_methods.py "
                          f"or --plugin mypackage.methods")
    try:
        found = importlib.util.find_spec(spec)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise OptionError(f"--plugin {spec}: no module of that name can be imported here. Fix: install it, "
                          f"add its folder to PYTHONPATH, or give the path of its .py file")
    return spec


def activate_plugins(specs: list[str] | None) -> list[str]:
    """Resolve ``specs`` and add them to ``FGVC_PLUGINS``; returns them as saved in the plan."""
    resolved = [resolve_plugin(s) for s in specs or []]
    if resolved:
        from fgmodels.registry import PLUGINS_ENV  # the registry reads it; imported late (torch)

        current = [p for p in os.environ.get(PLUGINS_ENV, "").split(",") if p]
        os.environ[PLUGINS_ENV] = ",".join(dict.fromkeys(current + resolved))
    return resolved
