"""Test doubles and fault drills that ship with the package, so tests and benchmarks import them.

``labels``: teacher labels built in memory for rule and stage tests. ``fault_campaign``:
kill -9, a second writer, read-only and full disks against the real CLI (it needs a source
checkout: it runs the committed AN4 clips and the support recipe's student config).
"""
