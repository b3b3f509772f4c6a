"""Pulse configuration: the bundled defaults (`pulse.toml`, `rules.toml`) and their loader."""
