"""Small checkers shared by the per-kind rules: hosts, ports, durations, labels, regexes, exportTo.

Each checker returns an error message (or None) so the caller can attach the field path.
"""
