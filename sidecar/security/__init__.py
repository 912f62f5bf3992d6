"""Who may talk to the sidecar: bearer tokens, TLS and mutual TLS on every server it runs."""
