"""Built-in YAML training recipes (package data)."""
