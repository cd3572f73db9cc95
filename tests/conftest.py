"""Suite-wide setup: litellm must never reach for the network while the tests import it."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# pytester runs the pytest plugin of fixedmodel.testing in throwaway projects.
pytest_plugins = ["pytester"]
