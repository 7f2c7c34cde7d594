"""The data owner's trust domain: private preference data, its DP reward model, its privacy ledger.

Never imports ``secure_mor.server``; never holds the CKKS secret key.
"""
