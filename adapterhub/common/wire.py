"""Names and patterns of the hub protocol that both ends use."""

from __future__ import annotations

import re

# A full git object id (a commit, or a blob's id in a file listing): 40 lowercase hex digits.
COMMIT_RE = re.compile(r"^[0-9a-f]{40}\Z")

# A repository id "org/name" as the client accepts it (the hub checks names more strictly when they are made).
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}\Z")

# The first member of a bundle (``/api/adapters/bundle``): the resolved commit and its files with their sha256.
BUNDLE_MANIFEST_NAME = ".adapterhub-bundle.json"
