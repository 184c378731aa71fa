"""Helpers the tests share: real servers, certificates, tools and the files they check."""
