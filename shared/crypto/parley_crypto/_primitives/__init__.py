"""Private arithmetic under the public API: modexp backends, DH and ElGamal math.

Nothing here validates wire input; the public modules do that before calling in.
"""
