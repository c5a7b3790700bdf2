"""cade: experiment management for Slurm and PBS clusters, with no server to run."""

__version__ = "0.1.0"
