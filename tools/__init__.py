"""Command-line tools a user runs (each file is a script: ``python tools/<name>.py --help``)."""
