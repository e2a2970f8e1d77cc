"""Preference objectives: the registered losses, token masks and token weightings."""
