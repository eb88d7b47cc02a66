"""``python -m linsteer``: the ``linsteer`` command (:func:`linsteer.cli.main.main`)."""

from __future__ import annotations

from linsteer.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
