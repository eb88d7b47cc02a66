"""Residual stream in, directions out: reading, the activation set, the vector file, extraction
methods and the control directions."""
