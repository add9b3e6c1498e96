"""Lifecycle: the account state machine and its actions on the Kubernetes cluster."""
