"""Subcommands of ``txl``; each module's ``register(subparsers, help)`` adds one, with the help
line that ``cli.COMMANDS`` holds for it."""
