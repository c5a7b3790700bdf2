"""`determined.launch` inside a cade job: cade_cli.det.launch starts the workers."""
