"""Deployable Lambda functions, one package each."""
