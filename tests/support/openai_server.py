"""The loopback server now ships with the package, in ``fixedmodel.testing.server``."""

from __future__ import annotations

from fixedmodel.testing.server import (
    DEFAULT_REPLY as DEFAULT_REPLY,
)
from fixedmodel.testing.server import (
    Fault as Fault,
)
from fixedmodel.testing.server import (
    OpenAIServer as OpenAIServer,
)
from fixedmodel.testing.server import (
    RecordedRequest as RecordedRequest,
)
from fixedmodel.testing.server import (
    embedding_vector as embedding_vector,
)
from fixedmodel.testing.server import (
    split_reply as split_reply,
)
