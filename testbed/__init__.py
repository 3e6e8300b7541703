"""The test bed: a real Docker daemon, a real nginx and a load generator on loopback.

Used by tests/, bench/ and the demo (scripts/demo). Nothing here is part of what a host runs.
"""
