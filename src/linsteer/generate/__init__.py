"""Steered text: eager generation, the compiled static-cache generator, and side by side."""
