"""Canonical class labels and the aliases accepted on input.

Every other module goes through :func:`canonical_label` so that a folder named ``no_mask`` or a VOC
object named ``mask_weared_incorrect`` lands in the same class everywhere.
"""

from __future__ import annotations

WITH_MASK = "with_mask"
WITHOUT_MASK = "without_mask"
MASK_INCORRECT = "mask_incorrect"

#: Label order used by the shipped model and in every JSON report.
LABELS: tuple[str, ...] = (WITH_MASK, WITHOUT_MASK, MASK_INCORRECT)

#: Names seen in public datasets, mapped to the canonical labels (lower case, input only).
ALIASES: dict[str, str] = {
    "with_mask": WITH_MASK,
    "mask": WITH_MASK,
    "correct": WITH_MASK,
    "masked": WITH_MASK,
    "without_mask": WITHOUT_MASK,
    "no_mask": WITHOUT_MASK,
    "nomask": WITHOUT_MASK,
    "unmasked": WITHOUT_MASK,
    "mask_incorrect": MASK_INCORRECT,
    "mask_weared_incorrect": MASK_INCORRECT,
    "mask_worn_incorrectly": MASK_INCORRECT,
    "incorrect": MASK_INCORRECT,
    "incorrect_mask": MASK_INCORRECT,
}

#: Labels that count as compliant when reporting people counts and compliance mAP.
COMPLIANT: frozenset[str] = frozenset({WITH_MASK})


class UnknownLabelError(ValueError):
    """Raised for a class name that is neither canonical nor a known alias."""


def canonical_label(name: str) -> str:
    """Map a folder or annotation name to its canonical label, or raise with the valid choices."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    try:
        return ALIASES[key]
    except KeyError:
        choices = ", ".join(sorted(ALIASES))
        raise UnknownLabelError(f"unknown label {name!r}; expected one of: {choices}") from None


def is_compliant(label: str) -> bool:
    """True for labels that meet the mask rule."""
    return label in COMPLIANT
