"""Who may use the server: an optional API key and the web origins allowed to drive it.

* ``--api_key`` (or ``SLED_API_KEY``): when set, the ``/v1`` routes and the ``/stream``
  WebSocket need ``Authorization: Bearer KEY`` (browsers cannot set headers on a WebSocket,
  so ``/stream?api_key=KEY`` is accepted there too); 401 otherwise. The page, ``/info`` and
  ``/synthesize`` stay open only when no key is set: with a key, ``/synthesize`` needs it too.
* A request carrying an ``Origin`` header from another site (a page the user happens to
  visit, driving the local server through the browser) is refused with 403 unless
  ``--allow_origin`` names that origin. The server's own page (same origin) and clients that
  send no ``Origin`` (curl, SDKs, Home Assistant) are not affected.
* A server bound to a loopback address answers only requests addressed to a loopback name
  (``Host: 127.0.0.1`` / ``localhost`` / ``[::1]``, or an ``--allow_origin`` host): a foreign
  page that points its own domain name at 127.0.0.1 (DNS rebinding) is same-origin with
  itself, and only the Host header gives it away (403).
"""

import hmac
import urllib.parse
from typing import Iterable, Optional

from aiohttp import web

API_KEY_ENV = "SLED_API_KEY"
KEYED_PREFIXES = ("/v1/", "/stream", "/synthesize")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def openai_error(status: int, message: str, code: str, kind: str = "invalid_request_error",
                 param: Optional[str] = None) -> web.Response:
    """An error in OpenAI's JSON shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return web.json_response({"error": {"message": message, "type": kind, "param": param, "code": code}},
                             status=status)


def same_origin(origin: str, request: web.Request) -> bool:
    return origin in (f"http://{request.host}", f"https://{request.host}")


def access_middleware(api_key: Optional[str], allow_origins: Iterable[str], loopback_only: bool = False):
    allowed = {o.rstrip("/") for o in allow_origins}
    hosts = set(LOOPBACK_NAMES) | {urllib.parse.urlsplit(o).hostname for o in allowed}
    expected = f"Bearer {api_key}".encode() if api_key else None

    @web.middleware
    async def check_access(request: web.Request, handler):
        host = urllib.parse.urlsplit(f"//{request.host}").hostname
        if loopback_only and host not in hosts:
            return openai_error(403, f"requests for host '{request.host}' are refused: this server listens on "
                                     "loopback only, address it as 127.0.0.1 or localhost", "host_not_allowed",
                                "permission_error")
        origin = request.headers.get("Origin")
        if origin is not None and not same_origin(origin, request) and origin.rstrip("/") not in allowed:
            return openai_error(403, f"requests from the web origin '{origin}' are refused; start the server "
                                     f"with --allow_origin {origin} to allow that page", "origin_not_allowed",
                                "permission_error")
        if expected is not None and request.path.startswith(KEYED_PREFIXES):
            given = request.headers.get("Authorization", "")
            if request.path == "/stream" and not given and "api_key" in request.query:
                given = "Bearer " + request.query["api_key"]
            if not hmac.compare_digest(given.encode(), expected):
                problem = "no API key given" if not given else "the API key is wrong"
                return openai_error(401, f"{problem}; send the server's --api_key as 'Authorization: Bearer KEY'",
                                    "invalid_api_key", "authentication_error")
        return await handler(request)

    return check_access
