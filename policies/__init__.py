"""Request policies: content (injection, PII) and spend/load (budgets, rate limits, circuits).

Each policy is one module; policies never import adapters. The gateway wires them into the pipeline.
"""
