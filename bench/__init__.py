"""Benchmarks (issue 5): DynamoDB cost per event, cold start, throughput. ``python -m bench.run``.

They print figures rather than assert timings: a timed test is flaky on a shared machine, a table
read by a person is not. ``tests/unit/test_bench_smoke.py`` only proves the scripts still run.
"""
