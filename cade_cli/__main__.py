from cade_cli.cli import main

main()
