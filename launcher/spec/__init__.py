"""The strategy as data: the strict schema, the typed sections, the catalog with ``extends`` and
``--set``, the cross-field rules, and the engine registry (:mod:`launcher.spec.engines`).

Pure Python and PyYAML: nothing here starts a process or imports torch.
"""
