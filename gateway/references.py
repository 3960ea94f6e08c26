"""What the gateway takes as an image reference or a branch name, wherever one comes from
(a setting or a request): one rule each."""

from __future__ import annotations

import re

# Docker's reference grammar, loosely: a name, an optional :tag and @digest.
IMAGE_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")
# git check-ref-format's rules, for the characters taken here (letters, digits, _ . / -).
_BRANCH = re.compile(r"^(?![-/.])(?!.*\.\.)(?!.*//)(?!.*/\.)[A-Za-z0-9_./-]{1,255}$")


def is_image_reference(value: str) -> bool:
    return bool(IMAGE_REFERENCE.fullmatch(value))


def is_branch_name(value: str) -> bool:
    """A name git takes for a branch (`git check-ref-format --branch`) and that needs no
    quoting anywhere the gateway writes it."""
    return bool(_BRANCH.fullmatch(value)) and not value.endswith((".lock", "/", "."))
