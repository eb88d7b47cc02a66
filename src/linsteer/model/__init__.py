"""Load a model and find its blocks: every piece of architecture knowledge (loading, the layer
convention, recurrent models, built-in GGUFs, the CPU dtype)."""
