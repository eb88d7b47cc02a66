"""Apply a direction inside any forward: the condition (``Setting``), operators, positions,
the hooks, and what the hooks cost."""
