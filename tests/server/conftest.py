"""Server tests reuse the crypto tests' federation kit and running key holder."""

from ..crypto.conftest import federation, foreign_federation, keyholder, secret

__all__ = ["federation", "foreign_federation", "keyholder", "secret"]
