"""Search spaces: ``spaces/<name>.yaml`` -> a validated space -> Optuna -> a trial's config.

* :mod:`~search.spaces.loader` reads and checks space files (format in its docstring);
* :mod:`~search.spaces.checks` judges every value through ``fgmodels.config.check_values``;
* :mod:`~search.spaces.params` holds one searched knob (:class:`ParamSpec`);
* :class:`MethodSpace` searches one method, :class:`UnionSpace` several
  (the method is then a choice), both behind :class:`SearchSpace`;
* :mod:`~search.spaces.names` is the Optuna bridge: :class:`OptunaNames` maps
  config keys to Optuna parameter names and back, for the searcher, the
  trainable, :func:`sample_configs` and the importance study alike.

A trial's config is decoded and resolved once, in the trainable; everything
after it reads that resolved config, never the searcher's raw proposal.
"""
from search.spaces.base import SearchSpace
from search.spaces.checks import SpaceError
from search.spaces.loader import SPACES_DIR, load_space, parse_overrides
from search.spaces.method import MethodSpace
from search.spaces.names import SEP, OptunaNames, to_trial_config
from search.spaces.params import ParamSpec
from search.spaces.sampling import sample_configs
from search.spaces.union import UnionSpace

__all__ = ["SPACES_DIR", "MethodSpace", "OptunaNames", "ParamSpec", "SEP", "SearchSpace", "SpaceError",
           "UnionSpace", "load_space", "parse_overrides", "sample_configs", "to_trial_config"]
