"""A model definition with a syntax error on line 4."""

class BrokenTrial(
    def
