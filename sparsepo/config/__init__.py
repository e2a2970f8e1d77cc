"""Configuration: the typed training config (schema), its checks at load, flags from dataclasses, and
the pre-flight checks run before Ray starts."""
