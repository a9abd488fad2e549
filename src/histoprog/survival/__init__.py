"""Survival statistics that no maintained Python library provides, each checked against R."""
