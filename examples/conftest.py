"""Make the examples importable from a checkout without installing them."""

import sys
from pathlib import Path

for src in sorted(Path(__file__).parent.glob("*/src")):
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
