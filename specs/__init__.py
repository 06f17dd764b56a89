"""The shipped specs as installed data (geomcheck.builtin_specs, addressed as builtin:NAME); the YAML files are the content."""
