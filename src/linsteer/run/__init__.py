"""A run directory: its config, validation at the boundary, the stages, and the multi-model
commands (compare, family, Ray)."""
