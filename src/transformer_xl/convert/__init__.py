"""Converters between this project's checkpoints and foreign formats (declarative key maps)."""
