"""Text-to-code (paper 3.5, Table 2): sampled solutions executed against each problem's tests, passing-vs-failing
pairs (appendix B.5), pass@k on HumanEval and MBPP."""
