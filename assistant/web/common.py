"""What every tab shares: event options and making untrusted text safe to render.

`PRIVATE` keeps an event off the API page, so the API page lists only what programs may rely on
(assistant/web/api.py). It is a listing choice, not access control: every event checks its
caller itself (assistant/web/gate.py). `no_remote_images` turns images in untrusted Markdown into
links, so showing an answer never makes the browser fetch from another host.
"""

from __future__ import annotations

import re

PRIVATE = {"api_visibility": "private"}
# Every event that runs the model shares one queue slot; the door (assistant/web/door.py) limits
# how many of these one account may have waiting.
MODEL = {"concurrency_id": "model"}

# Tags that make a browser fetch or embed something; shown as text instead.
_FETCHING_TAGS = re.compile(
    r"<(?=\s*/?\s*(?:img|image|picture|source|svg|video|audio|track|iframe|frame|object|embed"
    r"|link|meta|base|style|input|form|body|math)\b)",
    re.I,
)


def no_remote_images(text: str) -> str:
    """Markdown images become plain links, and tags that fetch become visible text.

    >>> no_remote_images("see ![cat](http://evil.example/x.png) and <img src=http://e/x>")
    'see [cat](http://evil.example/x.png) and &lt;img src=http://e/x>'
    >>> no_remote_images("![a][ref] <IMG/src=x> <b>bold</b>")
    '[a][ref] &lt;IMG/src=x> <b>bold</b>'
    """
    text = re.sub(r"!(?=\s*\[)", "", text or "")
    return _FETCHING_TAGS.sub("&lt;", text)
