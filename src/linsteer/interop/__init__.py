"""Vectors in other tools: llama.cpp control vectors (both ways) and lm-eval steer files."""
