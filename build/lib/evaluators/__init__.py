"""Evaluators: verifiable scoring of model output (math answers, sandboxed code)."""
