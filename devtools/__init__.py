"""Development tools run by ``make check`` (not part of any distribution)."""
