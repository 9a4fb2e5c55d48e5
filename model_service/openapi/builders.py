"""The small pieces every part of the OpenAPI document is made of: a description's text, a
reference to a schema, a JSON body, an error answer, a 64-bit integer."""

import inspect
import textwrap

REF = "#/components/schemas/"
INT64 = {"type": "integer", "format": "int64", "minimum": -(2**63), "maximum": 2**63 - 1}


def text(docstring):
    """A description written as an indented block: its paragraphs, filled to 88 columns
    (the values put into an f-string would make some lines long)."""
    paragraphs = inspect.cleandoc(docstring).split("\n\n")
    return "\n\n".join(textwrap.fill(" ".join(p.split()), 88) for p in paragraphs)


def ref(name):
    return {"$ref": REF + name}


def json_content(schema):
    return {"application/json": {"schema": schema}}


def error_response(description):
    """An answer whose body is {"error": ...} (components/schemas/Error)."""
    return {"description": description, "content": json_content(ref("Error"))}
