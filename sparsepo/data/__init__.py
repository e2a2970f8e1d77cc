"""Preference data: readers and validation of TRL-style pairs, and offline pair sets built from shipped corpora."""
