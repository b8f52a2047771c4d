"""Multi-branch fine-grained classification methods on timm backbones.

Importing the package registers the built-in methods (:mod:`fgmodels.methods`);
the registry itself imports no method.
"""
from fgmodels.registry import create_method, get_method_class, list_methods, method_hparams, register_method

import fgmodels.methods  # noqa: E402,F401  (each module registers its method)

__all__ = ["create_method", "get_method_class", "list_methods", "method_hparams", "register_method"]
