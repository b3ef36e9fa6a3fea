"""Certificate tooling: a CA, the webhook's serving certificate, its Secret and caBundle wiring."""
