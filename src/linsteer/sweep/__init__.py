"""The sweep: tasks x conditions x splits, resumable. Tasks, strength calibration, the layer scan,
the loop and the results store."""
