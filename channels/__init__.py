"""Providers that deliver messages: one interface, one adapter per provider."""
