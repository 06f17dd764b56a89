"""The pytest plugin: options and hooks (plugin.py), spec files as items (collect.py), the report writer (reporter.py)."""
