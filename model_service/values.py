"""How a JSON value is read: what is missing, an integer, a number; and how to name a type.

Shared by the validation of observations (parsing.py) and of true values (tasks.py), so that a
value gets the same answer, and the same words, wherever it is sent.
"""

import math
from decimal import Decimal


def is_missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def parse_integer(value, name, low=-(2**63), high=2**63 - 1):
    """An int, or an integral float such as 3.0 (pandas writes ints that way), in range."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {json_type(value)}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}")
    return value


def parse_number(value, name, largest=math.inf):
    """A finite int or float, as a float, at most `largest` in size (a float32's range...)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {json_type(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or abs(number) > largest or beyond(value, largest):
        raise ValueError(f"{name} must be a finite number")
    return number


def beyond(value, largest):
    """Whether an integer exceeds the bound as its decimal text states it (the OpenAPI
    document does): -1.7976931348623157e308 - 1 would round to the bound as a float."""
    if not isinstance(value, int) or not math.isfinite(largest):
        return False
    return abs(value) > int(Decimal(repr(largest)))


def json_type(value):
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a fraction",
        str: "a string",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
