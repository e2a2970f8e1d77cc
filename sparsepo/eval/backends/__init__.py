"""Generation backends behind :class:`sparsepo.eval.generation.Generator`, one module each.

Build them by name with :func:`sparsepo.eval.generation.make_generator`; importing this package imports none
of them (vLLM and Ray take seconds to import).
"""
