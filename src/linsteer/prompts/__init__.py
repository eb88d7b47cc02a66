"""Prompt data: contrast sets, built-in tasks, prompt formats, benchmark readers and answer
formats. Data only: nothing here runs a model."""
