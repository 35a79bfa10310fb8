"""Subcommands of ``txl``; each module's ``register(subparsers)`` adds one."""
