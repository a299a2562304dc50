"""Training text as data: reading text sources as documents, and token files prepared once and memory-mapped.

Stdlib only: the CLI prepares token files without torch, the payload maps them with numpy.
"""
