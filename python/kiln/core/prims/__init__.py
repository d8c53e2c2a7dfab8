"""Families of primitive records; each module registers its records on import."""
