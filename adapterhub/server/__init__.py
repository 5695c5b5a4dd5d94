"""The adapter hub server: Hugging Face wire protocol, validation, auth (and, from other modules, search and UI).

Start it with ``adapterhub serve``; build the ASGI app in code with :func:`adapterhub.server.app.create_app`.
"""
