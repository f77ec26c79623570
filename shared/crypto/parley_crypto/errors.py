"""The exceptions parley_crypto raises. Every one derives from ParleyError."""


class ParleyError(Exception):
    """Base of every error this package raises on purpose."""


class InvalidMessage(ParleyError):
    """A sealed envelope was malformed, tampered with, replayed, reordered or truncated.

    Deliberately one type with a short reason: the caller shows "message rejected" and
    drops it; nothing about the session state changes.
    """


class InvalidPublicKey(ParleyError):
    """A Diffie-Hellman public value failed validation (range, subgroup, or shared secret 1)."""


class WeakParameters(ParleyError):
    """Group parameters were rejected. ``str()`` names the rule that failed."""

    def __init__(self, rule: str, detail: str = "") -> None:
        self.rule = rule
        super().__init__(f"{rule}: {detail}" if detail else rule)


class HandshakeError(ParleyError):
    """An identity or handshake payload was malformed, unverifiable, or inconsistent."""


class LegacyPeer(HandshakeError):
    """The peer speaks the original, unauthenticated protocol (bare string/number payloads)."""


class OlderPeer(ParleyError):
    """The peer speaks Parley protocol v1 (payloads with ``"v": 1``). Never downgraded to:
    the text is one line for the user, ``"<name> runs an older Parley (protocol v1); both
    sides need v2"``."""

    def __init__(self, name: str = "the peer") -> None:
        self.name = name
        super().__init__(f"{name} runs an older Parley (protocol v1); both sides need v2")
