"""A JSON parser that keeps numbers exact.

The stock parser turns ``12.50`` into a float, after which ``1.005`` and ``1e3`` can no longer
be told apart from valid amounts. Here numbers become ``Decimal`` and NaN/Infinity are refused.
"""

import json
from decimal import Decimal

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", "utf-8")
        try:
            text = stream.read().decode(encoding) if stream is not None else ""
            return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as error:
            raise ParseError(f"The body is not valid JSON: {error}") from None
        except RecursionError:  # "[[[[..." nested deeper than the decoder's stack allows
            raise ParseError("The body is not valid JSON: it is nested too deeply.") from None
