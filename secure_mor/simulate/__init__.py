"""``secure-mor simulate``: the whole federation on one machine, as separate processes, with a report."""
