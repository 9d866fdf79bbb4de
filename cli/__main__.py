"""`python -m cli`: the `hospital` command, as the supervisor starts its services."""

from cli.main import app

app()
