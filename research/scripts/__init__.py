"""One-off measurement scripts, each named by the docs/results page that ran it. Run one
as ``.venv/bin/python research/scripts/NAME.py --help``."""
