"""Tests of secure_mor.crypto and the wire protocol."""
