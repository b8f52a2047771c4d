"""Multi-branch fine-grained classification methods on timm backbones."""
from fgmodels.registry import create_method, list_methods, register_method

__all__ = ["create_method", "list_methods", "register_method"]
