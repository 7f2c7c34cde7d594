"""Server tests reuse the crypto tests' federation kit and running key holder."""

from ..crypto.conftest import federation, keyholder, secret

__all__ = ["federation", "keyholder", "secret"]
