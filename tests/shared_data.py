"""Where the tests find the real genomic data of ``../shared/data``.

The data lives beside a checkout (``<checkout>/../shared/data``), not inside it. Set
``STRANDWISE_SHARED_DATA`` to use another copy. Test modules that read it set
``pytestmark = needs_shared_data``: without the data they are skipped with a reason that says
where it was looked for, instead of failing on a missing file.
"""
import os

import pytest

_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHARED_DATA = os.path.abspath(
    os.environ.get("STRANDWISE_SHARED_DATA") or os.path.join(_CHECKOUT, "..", "shared", "data"))


def shared(*parts: str) -> str:
    """Path of a file or folder under the shared data root."""
    return os.path.join(SHARED_DATA, *parts)


needs_shared_data = pytest.mark.skipif(
    not os.path.isdir(SHARED_DATA),
    reason=f"real data not found at {SHARED_DATA}; set STRANDWISE_SHARED_DATA to its folder")
