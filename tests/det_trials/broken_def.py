"""A model definition with a syntax error: the parenthesis of line 3 never closes."""

class BrokenTrial(
    def
