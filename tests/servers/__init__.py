"""Real servers (Postfix) and certificates for the tests."""
