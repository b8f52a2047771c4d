"""Hyperparameter search for FGVC methods with Ray Tune + Optuna + ASHA.

    python run_search.py --space gholm                 # CPU demo on synthetic data (minutes)
    python run_search.py --help                        # every option, its default and the exit statuses

The same command is installed as ``fgvc-search``; both run :func:`search.driver.main`.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search.driver import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
