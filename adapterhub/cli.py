"""The `adapterhub` command line. Each package registers its own commands here."""

import os
import sys

import typer


def limit_openmp_spinning() -> None:
    """Idle OpenMP threads of torch spin for ~300,000 iterations before they sleep. On a CPU shared with other
    processes a spinning thread holds the core that the thread it waits for needs: a training step of the
    quickstart then took 4-9 s instead of 0.8 s at load 8 on 2 cores. A short spin keeps the unloaded speed.
    libgomp reads the setting once, when torch loads it, so this only applies before torch is imported; an
    explicit OMP_WAIT_POLICY or GOMP_SPINCOUNT wins."""
    if "torch" not in sys.modules and not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ):
        os.environ["GOMP_SPINCOUNT"] = "10000"


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
    app.command("worker")(server_cli.worker)


limit_openmp_spinning()
_register()


if __name__ == "__main__":
    app()
