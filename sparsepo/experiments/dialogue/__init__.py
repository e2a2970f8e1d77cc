"""Dialogue (paper 3.3, Table 1): Anthropic HH-RLHF transcripts as conversational pairs, SFT on the chosen
responses, PO methods, the Open LLM Leaderboard suite."""
