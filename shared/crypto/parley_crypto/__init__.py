"""Parley crypto and protocol core (sans-IO).

Public modules: errors, groups, dh, elgamal, aes_cfb, kdf, identity, handshake, ratchet,
padding, session, session_state, safety, prekeys (asynchronous first contact),
prekey_store. Private arithmetic lives in ``parley_crypto._primitives``.
"""

from parley_crypto import (  # noqa: F401  (re-exported modules)
    aes_cfb,
    dh,
    elgamal,
    errors,
    groups,
    handshake,
    identity,
    kdf,
    padding,
    prekey_store,
    prekeys,
    ratchet,
    safety,
    session,
    session_state,
)
