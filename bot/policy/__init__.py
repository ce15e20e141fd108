"""The tool policy (SPEC §5): loading, CEL conditions, evaluation, hot reload, table tests.

Imports ``bot.domain`` and ``bot.errors`` only (plus PyYAML, cel-expr-python, rfc8785).
"""
