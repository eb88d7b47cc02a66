"""The ``linsteer`` command: wiring only (``main``: the commands; ``interop``: export, import, Ray)."""
