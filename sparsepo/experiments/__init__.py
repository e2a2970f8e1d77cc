"""The paper's experiments, one subpackage each (sentiment control: ``sentiment``)."""
