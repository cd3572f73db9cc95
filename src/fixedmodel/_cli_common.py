"""What the command line's parts share: exit codes, the usage error, keeping secrets out.

Exit codes: 0 every line answered; 1 some lines failed or were not run, or ``chat`` got an
error; 2 nothing was sent (bad arguments or input); 130 interrupted.

Credentials are kept out of what the command line prints.

A URL's user and password (``https://user:secret@host``) and its query string (Azure and
others take ``?api-key=...``) are hidden, and so is the value of any environment variable
whose name says it is a credential (``OPENAI_API_KEY``, ``AWS_SECRET_ACCESS_KEY``, ...)
wherever it appears in a message (an error that echoes a header, say).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_NOTHING_SENT = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A problem found before anything was sent: one line on stderr, exit code 2."""


_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_CREDENTIAL_PARTS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")
_SHORTEST_SECRET = 6  # shorter values ("1", "true") would hide ordinary words


def is_credential(variable: str) -> bool:
    """Whether an environment variable's name says it holds a credential."""
    name = variable.upper()
    return any(part in name for part in _CREDENTIAL_PARTS)


def redact_url(url: str) -> str:
    """``url`` with its user, password and query hidden (``***``)."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "<a URL>"
    userinfo = "***@" if "@" in parts.netloc else ""
    query = "?***" if parts.query else ""
    fragment = "#***" if parts.fragment else ""
    return f"{parts.scheme}://{userinfo}{host}{parts.path}{query}{fragment}"


def secrets() -> list[str]:
    """The values of the credential variables of the environment, as ``redact`` hides them."""
    return [
        value
        for name, value in os.environ.items()
        if is_credential(name) and len(value) >= _SHORTEST_SECRET
    ]


def redact(text: str, hidden: Sequence[str] | None = None) -> str:
    """``text`` with the credentials in URLs and credential variables' values hidden.

    ``hidden``: the values to hide (``secrets()``, read once for many texts), else read now.
    """
    values = secrets() if hidden is None else hidden
    shown = _URL.sub(lambda found: redact_url(found.group(0)), text)
    for value in values:
        if value in shown:
            shown = shown.replace(value, "***")
    return shown


def bound_defaults(api_base: str | None, mock_response: str | None) -> dict[str, Any]:
    """The bound object's defaults the options give (shared by ``chat`` and ``batch``)."""
    defaults: dict[str, Any] = {}
    if api_base is not None:
        defaults["api_base"] = api_base
        # A local OpenAI-compatible server takes any key; the SDK wants one.
        if not os.environ.get("OPENAI_API_KEY"):
            defaults["api_key"] = "unused"
    if mock_response is not None:
        defaults["mock_response"] = mock_response
    return defaults
