"""signalling package."""
