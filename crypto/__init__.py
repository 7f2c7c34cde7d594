"""The key holder's trust domain and the cryptographic primitives every role uses.

Imports neither ``secure_mor.client`` nor ``secure_mor.server``.
"""
