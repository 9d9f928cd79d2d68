"""Webhooks of finished predictions: where they may go, how they are signed, one call.

A webhook URL comes from an account, and the service calls it from inside the
operator's network: unchecked, it would let any account make the service post
to its own admin ports, a metadata service (169.254.169.254) or a database on
the LAN. So a destination must resolve only to public addresses, or to a
network the operator listed in INFER_WEBHOOK_ALLOWED_NETWORKS, and the call goes
to the address that was checked (not to a second DNS answer: no rebinding),
without following redirects.

Each call carries X-Infer-Signature: sha256=<hex HMAC-SHA256 of the body with the
account's webhook secret> (GET /webhook-secret), as GitHub signs its webhooks.
"""

import hashlib
import hmac
import http.client
import ipaddress
import secrets
import socket
import ssl
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Infer-Signature"
MAX_URL_LENGTH = 2000


class WebhookRefused(ValueError):
    """The URL may not be called: the message says why and what to change."""


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def allowed_networks(setting: str) -> list:
    """INFER_WEBHOOK_ALLOWED_NETWORKS parsed (a bad entry fails at start, naming it)."""
    networks = []
    for entry in (part.strip() for part in setting.split(",")):
        if entry:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"INFER_WEBHOOK_ALLOWED_NETWORKS: {entry!r} is not a network like 10.0.0.0/8") from None
    return networks


def check_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL a webhook may have, or WebhookRefused."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused(f"not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused("send an http:// or https:// URL with a host name")
    if parts.username or parts.password:
        raise WebhookRefused("leave credentials out of the URL; verify the signature header instead")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _why_refused(address, networks: list) -> str | None:
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address in network for network in networks):
        return None
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    if not address.is_global:
        return "not a public address"
    return None


def resolve(host: str, port: int, networks: list) -> str:
    """The address to call: every address the host resolves to must be allowed
    (an attacker's DNS may answer a public and a private one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise WebhookRefused(f"{host} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for text in addresses:
        reason = _why_refused(ipaddress.ip_address(text.split("%")[0]), networks)
        if reason:
            raise WebhookRefused(f"{host} resolves to {text}, {reason}; webhooks go to public addresses only, "
                                 "unless the operator lists the network in INFER_WEBHOOK_ALLOWED_NETWORKS")
    return addresses[0]


def destination(url: str, networks: list) -> tuple[str, str, int, str]:
    """(scheme, host, port, address to connect to) of an allowed webhook URL."""
    scheme, host, port = check_url(url)
    return scheme, host, port, resolve(host, port, networks)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a given address, with the certificate checked against the host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def deliver(url: str, body: bytes, secret: str, networks: list, timeout: float, delivery_id: str) -> int:
    """POST the body to the webhook once; its HTTP status (raises WebhookRefused or OSError)."""
    scheme, host, port, address = destination(url, networks)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if scheme == "https":
        connection = _PinnedHTTPS(host, port, address, timeout)
    else:
        connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("POST", target, body=body, headers={
            "Host": host if port in (80, 443) else f"{host}:{port}",
            "Content-Type": "application/json",
            "User-Agent": "infer-webhooks/1",
            SIGNATURE_HEADER: sign(secret, body),
            "X-Infer-Delivery": delivery_id,
        })
        response = connection.getresponse()
        response.read(64 * 1024)  # a redirect is not followed: 3xx counts as a failure
        return response.status
    finally:
        connection.close()
