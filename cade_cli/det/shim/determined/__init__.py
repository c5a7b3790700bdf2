# The `determined` import name under cade: see cade_cli/det.
