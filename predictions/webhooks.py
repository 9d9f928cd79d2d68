"""Webhooks of finished predictions: where they may go, how they are signed, one call.

A webhook URL comes from an account, and the service calls it from inside the
operator's network: unchecked, it would let any account make the service post
to its own admin ports, a metadata service (169.254.169.254) or a database on
the LAN. So a destination must resolve only to public addresses, or to a
network the operator listed in INFER_WEBHOOK_ALLOWED_NETWORKS, and the call goes
to the address that was checked (not to a second DNS answer: no rebinding),
without following redirects. An IPv6 address that carries an IPv4 address
(6to4, Teredo, NAT64, ISATAP, IPv4-mapped...) is judged by that IPv4 address
too: 2002:a00:1:: reaches 10.0.0.1 through a 6to4 relay.

Resolving is bounded (INFER_WEBHOOK_RESOLVE_TIMEOUT_S), and the call itself
has one deadline for all of it (predictions/webhook_http.py).

Each call carries X-Infer-Signature: sha256=<hex HMAC-SHA256 of the body with the
account's webhook secret> (GET /webhook-secret), as GitHub signs its webhooks.
"""

import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
import threading
import time
from urllib.parse import urlsplit

from . import webhook_http

SIGNATURE_HEADER = "X-Infer-Signature"
MAX_URL_LENGTH = 2000
# What may not appear raw in a URL's host, path or query (the request line is written as it is).
_UNSAFE_CHARACTERS = re.compile("[\x00-\x20\x7f]")


class WebhookRefused(ValueError):
    """The URL may not be called: the message says why and what to change.
    `final`: it never will be (retrying is pointless); a name that did not
    resolve in time may resolve later."""

    final = True


class WebhookUnresolved(WebhookRefused):
    final = False


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
    if _UNSAFE_CHARACTERS.search(parts.netloc + parts.path + parts.query):
        raise WebhookRefused("the URL holds spaces or control characters: percent-encode them")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


# --- IPv6 addresses that carry an IPv4 address -------------------------------------------

IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT, RFC 2765: ::ffff:0:a.b.c.d
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated, RFC 4291: ::a.b.c.d
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: a translator of the operator's own
# Forms whose destination is the IPv4 address itself (a mapped socket, a NAT64
# gateway translating to it): public IPv4 inside, they are public.
_STAND_FOR_IPV4 = ("IPv4-mapped", "IPv4-translated", "NAT64")


def embedded_ipv4(address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """[(the form, the IPv4 address it carries)] of an IPv6 address; [] for any other."""
    if address.version != 6:
        return []
    number = int(address)
    last32 = ipaddress.IPv4Address(number & 0xFFFF_FFFF)
    found = []
    if address.ipv4_mapped is not None:
        found.append(("IPv4-mapped (::ffff:0:0/96)", address.ipv4_mapped))
    elif address in IPV4_TRANSLATED:
        found.append(("IPv4-translated (::ffff:0:0:0/96)", last32))
    elif address in IPV4_COMPATIBLE and number > 1:  # :: and ::1 are the unspecified and loopback addresses
        found.append(("IPv4-compatible (::/96)", last32))
    if address.sixtofour is not None:
        found.append(("6to4 (2002::/16)", address.sixtofour))
    if address.teredo is not None:
        server, client = address.teredo  # the client's address is stored inverted: Python undoes it
        found += [("Teredo (2001::/32) server", server), ("Teredo (2001::/32) client", client)]
    if address in NAT64_WELL_KNOWN:
        found.append(("NAT64 (64:ff9b::/96)", last32))
    if address in NAT64_LOCAL_USE:
        found.append(("local-use NAT64 (64:ff9b:1::/48)", last32))
    # ISATAP: an interface identifier 0000:5efe or 0200:5efe (the u/g bits may be set) then the IPv4 address.
    if (number >> 32) & 0xFCFF_FFFF == 0x0000_5EFE:
        found.append(("ISATAP (interface identifier ::5efe:a.b.c.d)", last32))
    return found


def _a(form: str) -> str:
    return "an" if form[0] in "AEIOU" else "a"


def _plain_reason(address) -> str | None:
    for kind in ("loopback", "unspecified", "link_local", "multicast", "reserved", "private"):  # specific first
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    if not address.is_global:
        return "not a public address"
    return None


def _allowed(address, networks: list) -> bool:
    return any(address in network for network in networks)


def why_refused(address, networks: list) -> str | None:
    """Why a webhook may not go to this address; None when it may."""
    if _allowed(address, networks):
        return None  # the operator listed its network
    forms = embedded_ipv4(address)
    for form, inner in forms:
        reason = None if _allowed(inner, networks) else _plain_reason(inner)
        if reason:
            return f"{_a(form)} {form} address carrying {inner}, {reason}"
    for form, inner in forms:
        if form.startswith("local-use NAT64"):
            return f"{_a(form)} {form} address carrying {inner}: it reaches the operator's own translator"
        if form.startswith("IPv4-compatible"):
            return f"{_a(form)} {form} address carrying {inner}: the form is deprecated; send {inner} itself"
    if forms and all(form.startswith(_STAND_FOR_IPV4) for form, _ in forms):
        return None  # the public IPv4 address is what is reached
    reason = _plain_reason(address)
    if reason and forms:
        form, inner = forms[0]
        return f"{reason} ({_a(form)} {form} address carrying {inner})"
    return reason


# --- resolving, bounded ---------------------------------------------------------------

class Resolver:
    """getaddrinfo with a deadline. libc's resolver takes no timeout per call, and
    a slow DNS server (the account's own, for its own domain) would hold the
    caller: each lookup runs on a thread of its own, at most `threads` at once,
    and the caller waits `timeout_s` at most. A lookup still running then is
    left to end by itself (libc gives up after resolv.conf's timeout x attempts)
    and keeps its slot until it does."""

    def __init__(self, threads: int, timeout_s: float):
        self.timeout_s = float(timeout_s)
        self._slots = threading.BoundedSemaphore(max(1, int(threads)))

    def addresses(self, host: str, port: int) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host))]  # a literal address: nothing to look up
        except ValueError:
            pass
        deadline = time.monotonic() + self.timeout_s  # for the wait for a slot and the lookup together
        if not self._slots.acquire(timeout=self.timeout_s):
            raise WebhookUnresolved(f"{host} could not be looked up now (every lookup slot is busy); "
                                    "it is tried again later")
        answer: dict = {}
        done = threading.Event()

        def lookup():
            try:
                answer["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                answer["error"] = exc
            finally:
                self._slots.release()
                done.set()

        threading.Thread(target=lookup, name="webhook-resolve", daemon=True).start()
        if not done.wait(max(0.0, deadline - time.monotonic())):
            raise WebhookUnresolved(f"{host} did not resolve within INFER_WEBHOOK_RESOLVE_TIMEOUT_S "
                                    f"({self.timeout_s:g} s)")
        if "error" in answer:
            raise WebhookUnresolved(f"{host} does not resolve ({answer['error']})")
        return list(dict.fromkeys(info[4][0] for info in answer["infos"]))


def resolve(host: str, port: int, networks: list, resolver: Resolver) -> str:
    """The address to call: every address the host resolves to must be allowed
    (an attacker's DNS may answer a public and a private one)."""
    addresses = resolver.addresses(host, port)
    for text in addresses:
        reason = why_refused(ipaddress.ip_address(text.split("%")[0]), networks)
        if reason:
            raise WebhookRefused(f"{host} resolves to {text}, {reason}; webhooks go to public addresses only, "
                                 "unless the operator lists the network in INFER_WEBHOOK_ALLOWED_NETWORKS")
    return addresses[0]


def destination(url: str, networks: list, resolver: Resolver) -> tuple[str, str, int, str]:
    """(scheme, host, port, address to connect to) of an allowed webhook URL."""
    scheme, host, port = check_url(url)
    return scheme, host, port, resolve(host, port, networks, resolver)


# --- one call -------------------------------------------------------------------------

def deliver(url: str, body: bytes, secret: str, networks: list, resolver: Resolver, deadline_s: float,
            delivery_id: str, headers: dict | None = None) -> int:
    """POST the body to the webhook once; its HTTP status (a redirect is not
    followed: 3xx counts as a failure). Raises WebhookRefused, or OSError when
    the call got no answer by the deadline."""
    scheme, host, port, address = destination(url, networks, resolver)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return webhook_http.post(scheme, host, port, address, target, {
        "Content-Type": "application/json",
        "User-Agent": "infer-webhooks/1",
        SIGNATURE_HEADER: sign(secret, body),
        "X-Infer-Delivery": delivery_id,
        **(headers or {}),
    }, body, deadline_s)
