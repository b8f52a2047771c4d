"""Built-in methods. Importing this package imports every module in it, and
each module registers its method with ``@register_method``."""
import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    if _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")
