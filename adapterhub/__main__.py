"""``python -m adapterhub ...`` (and ``torchrun -m adapterhub train ...``): the ``adapterhub`` command."""

from .cli import app

app()
