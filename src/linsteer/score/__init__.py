"""Score items under many steering conditions at once: the replay engine, multiple choice,
generated answers, neutral-text side effects and the per-item record."""
