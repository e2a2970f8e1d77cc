"""Summary quality control (paper 3.4, Figure 5): TL;DR feedback or an offline miniature, PO methods, the
summarisation suite at several temperatures."""
