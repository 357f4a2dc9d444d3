"""Type checks of settings read from YAML, which gives whatever was typed ("2", 1.5, true).
`bool` is a subclass of `int` in Python, so `true` would pass as a count without them."""


def is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
