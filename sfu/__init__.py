"""sfu package."""
