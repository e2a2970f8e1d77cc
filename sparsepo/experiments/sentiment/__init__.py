"""Sentiment control (paper 3.2): review-prefix prompts, sampled-and-ranked pairs, the reward-KL frontier."""
