"""Guard for the simulators' control routes (reset counters, inject faults).

The controls exist for tests and drills, which call them from code on loopback. A web page the
developer has open must not reach them: a cross-origin "simple" POST (``text/plain``, a form)
needs no CORS preflight, so the browser would send it. Refused here: any request a browser
marks as coming from another page (an ``Origin`` that is not the simulator itself, or
``Sec-Fetch-Site: cross-site``/``same-site``), and bodies in the content types a browser may
send cross-origin without asking (the CORS-safelisted ones). JSON bodies and bodiless calls
from code keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.requests import Request

SIMPLE_CONTENT_TYPES = frozenset(
    {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
)


def refusal(request: Request) -> tuple[int, str] | None:
    """``(status, reason)`` when a control request must be refused, else None."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None and origin != own:
        return 403, f"control routes refuse cross-origin requests (Origin {origin!r})"
    if request.headers.get("sec-fetch-site", "same-origin") not in {"same-origin", "none"}:
        return 403, "control routes refuse requests from other sites"
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type in SIMPLE_CONTENT_TYPES:
        return 415, f"control routes take a JSON body or none, not {content_type}"
    return None
