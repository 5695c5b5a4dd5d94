"""The `adapterhub` command line. Each package registers its own commands here."""

import typer

app = typer.Typer(help="adapterhub: train, share, find and load adapters.", no_args_is_help=True)


def _register() -> None:
    from adapterhub import train_cli

    app.command("train")(train_cli.train)
    app.command("quickstart")(train_cli.quickstart)
    from adapterhub.client import cli as client_cli  # search, info, pull, push, login, cache

    client_cli.register(app)
    try:  # the hub server is an optional extra ("adapterhub[hub]")
        from adapterhub.server import cli as server_cli
    except ImportError:
        return
    app.command("serve")(server_cli.serve)


_register()
