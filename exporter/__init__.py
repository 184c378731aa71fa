"""smtp-tls-exporter: which TLS versions SMTP servers accept, and when their certificates expire."""

__version__ = "0.1.0"
