"""Evaluation stage: generation backends, suites (sentiment, summarization, code, openllm), statistics, reports."""
