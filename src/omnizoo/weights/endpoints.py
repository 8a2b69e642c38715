"""Where a weights request goes and with which credentials: the one ``OMNIZOO_MIRRORS``
rewrite rule (:func:`mirror_urls`), ``HF_ENDPOINT`` (:func:`apply_hf_endpoint`) and the Hub
token, sent to the Hugging Face origin only (:func:`auth_headers`).
``verification.plan_candidates`` orders the mirrors, then the original (HF_ENDPOINT applied),
each marked mirror or origin; :mod:`omnizoo.weights.transport` sends the requests.
"""

from __future__ import annotations

from ..settings import DEFAULT_HF_ENDPOINT, Settings

__all__ = ["apply_hf_endpoint", "auth_headers", "mirror_urls"]


def mirror_urls(url: str, settings: Settings) -> list[str]:
    """The OMNIZOO_MIRRORS rewrites of ``url``: the longest matching prefix's mirrors in order,
    then shorter prefixes' (the one place the rewrite rule lives)."""
    out: list[str] = []
    for prefix in sorted(settings.mirrors, key=len, reverse=True):
        if url.startswith(prefix):
            rest = url[len(prefix) :]
            for mirror in settings.mirrors[prefix]:
                out.append(mirror if not rest else mirror.rstrip("/") + "/" + rest.lstrip("/"))
    return out


def apply_hf_endpoint(url: str, endpoint: str) -> str:
    """Rewrite a ``https://huggingface.co/...`` URL to the configured HF_ENDPOINT."""
    endpoint = endpoint.rstrip("/")
    if endpoint == DEFAULT_HF_ENDPOINT:
        return url
    for origin in (DEFAULT_HF_ENDPOINT, "http://huggingface.co"):
        if url == origin or url.startswith(origin + "/"):
            return endpoint + url[len(origin) :]
    return url


def auth_headers(url: str, settings: Settings) -> dict[str, str]:
    """``Authorization: Bearer $HF_TOKEN`` for a request to the Hugging Face origin
    (``OMNIZOO_HF_ORIGIN``: same scheme, host and port), and nothing for any other URL, so a
    mirror or ``HF_ENDPOINT`` never sees the token. httpx drops the header when the origin
    redirects to another host (the Hub's CDN URLs are signed).

    >>> from pathlib import Path
    >>> s = Settings(home=Path("/tmp"), hf_token="hf_x")
    >>> auth_headers("https://huggingface.co/org/m/resolve/main/model.safetensors", s)
    {'Authorization': 'Bearer hf_x'}
    >>> auth_headers("https://hf-mirror.com/org/m/resolve/main/model.safetensors", s)
    {}
    """
    if not settings.hf_token:
        return {}
    from urllib.parse import urlsplit

    try:
        want, got = urlsplit(settings.hf_origin), urlsplit(url)
        same = (want.scheme, want.hostname, want.port) == (got.scheme, got.hostname, got.port)
    except ValueError:
        return {}
    if not same or not got.path.startswith(want.path.rstrip("/") + "/"):
        return {}
    return {"Authorization": f"Bearer {settings.hf_token}"}
