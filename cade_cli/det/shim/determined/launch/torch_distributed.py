"""`python -m determined.launch.torch_distributed CMD` inside a cade job: cade_cli.det.launch."""

import sys

from cade_cli.det.launch import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
