"""The aligning party's trust domain: the policy VLM, its frozen reference, public prompts, the router.

Never imports ``secure_mor.client``; never holds a plaintext client score or the CKKS secret key.
"""
