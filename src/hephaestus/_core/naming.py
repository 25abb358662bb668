"""Context keys derived from class names: ``ValidateOrder`` -> ``validate_order``."""

from __future__ import annotations

__all__ = ["underscore"]


def underscore(name: str) -> str:
    """Snake-case a class name the way the seed does (``HTTPClient`` -> ``http_client``).

    An underscore goes before an uppercase letter that is not the first character when the
    previous character is lowercase or a digit, or when it starts a new word after an acronym
    (the next character is lowercase).
    """
    out: list[str] = []
    for index, char in enumerate(name):
        if char.isupper() and index > 0:
            previous = name[index - 1]
            following = name[index + 1] if index + 1 < len(name) else ""
            starts_word = previous.islower() or previous.isdigit()
            ends_acronym = previous.isupper() and following.islower()
            if (starts_word or ends_acronym) and previous != "_":
                out.append("_")
        out.append(char.lower())
    return "".join(out)
