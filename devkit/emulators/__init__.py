"""Local stand-ins for external services (Kubernetes API emulator) used by tests and the demo."""
