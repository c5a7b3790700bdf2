"""The backend contract suite (see suite.py)."""
