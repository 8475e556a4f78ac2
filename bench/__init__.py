"""Benchmarks (issue 5): DynamoDB cost per event, cold start, throughput. ``python -m bench.run``.

They print figures rather than assert timings: a timed test is flaky on a shared machine, a table
read by a person is not. ``tests/unit/test_bench_smoke.py`` only proves the scripts still run.
"""

import os

# The Lambda layer has no awscrt (infra/build/layer-constraints.txt), so on Lambda botocore signs
# requests in Python. A development venv may have awscrt (aws-sam-cli brings it); measure what
# Lambda runs. Set before botocore is first imported (it reads this once, at import).
os.environ.setdefault("BOTO_DISABLE_CRT", "true")
