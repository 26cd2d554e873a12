"""Files, the lowest layer: atomic writes, checked reads of what the kit wrote, folder locks, and
the one-line failures of the command lines, for every layer above to use.

Imports nothing of sdml outside this package (the layers above may import it).
"""
