"""Benchmarks: `python -m bench [scenario ...]` (`make bench SCENARIO=sync`); see bench/README.md.

They run the service's own code in-process against the provider sandboxes, with AWS in moto, and
report what they measure (bench/results/<scenario>.json and a table); they never assert on time.
"""

import os
import sys
from pathlib import Path

from local.template import load_sam_template

ROOT = Path(__file__).resolve().parents[1]

# The shared layer is importable the way Lambda makes it (its folder on sys.path), as in tests.
_LAYER = ROOT / "layers" / "shared"
if str(_LAYER) not in sys.path:
    sys.path.insert(0, str(_LAYER))

# Before the layer is imported: Powertools reads these when its logger and metrics are built. The
# service logs every sync and payment at INFO and flushes metrics to stdout every 100 values, which
# would bury the tables (POWERTOOLS_LOG_LEVEL=WARNING shows the retries). The metrics namespace is the
# one template.yaml gives every function: without it, that flush raises inside the service.
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
_FUNCTION_ENVIRONMENT = load_sam_template(ROOT / "template.yaml")["Globals"]["Function"]["Environment"]["Variables"]
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", _FUNCTION_ENVIRONMENT["POWERTOOLS_METRICS_NAMESPACE"])
