"""Files, the lowest layer: atomic writes that every layer above may use.

Imports nothing of sdml (the layers above may import it).
"""
