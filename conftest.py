"""Root conftest: pytester for the plugin's own tests; shared fixtures live in tests/conftest.py."""

pytest_plugins = ["pytester"]
