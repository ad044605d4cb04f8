"""Readers of external formats (recorded traces, tool outputs, user logs) into wattprof's schema.

Pure parsing: these modules know the schema and nothing of runs, collectors or reports. Every
malformed input raises :class:`wattprof.errors.InputError` naming the file, line and expectation.
"""
