"""The benchmark harness (`python -m bench`, see bench/README.md) and the guardrail benchmark (bench/guardrails.py)."""
