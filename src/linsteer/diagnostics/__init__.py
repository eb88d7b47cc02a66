"""Is the direction reasoning or surface form? Separability, geometry (PCA, cosines), confound
baselines and cross-model comparison (CKA)."""
