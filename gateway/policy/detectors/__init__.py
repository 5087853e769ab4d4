"""Detectors: what finds sensitive data in a message's text, and the registry of them.

The contract (:class:`gateway.policy.types.Detector`): a factory takes the
options a pack gives a detector (a TOML table), checks every one of them, and
raises :class:`~gateway.policy.types.DetectorConfigError` naming the option
for an unknown key or a wrong value, so a bad pack fails when it is loaded,
never on a message. The detector it returns is immutable, compiled once, and
safe to share across threads. ``find(text)`` returns the normalised value of
every hit, in order and with repeats (a BSN as its nine digits, an IBAN compact
in upper case), so the engine can count hits and distinct values.

Those values are the sensitive data itself: they stay in the memory of the
caller, which counts them and forgets them. Nothing here logs, stores or puts
them in an exception, and neither may a caller (reasons carry counts only).

Built-in detectors, one module each: ``bsn`` (Dutch citizen service numbers,
the 11-test), ``iban`` (ISO 13616), ``payment_card`` (ISO/IEC 7812, Luhn and
issuer ranges), ``email_addresses``, ``keywords`` and ``regex`` (google-re2).
Other packages add detectors with an entry point in the ``sealgate.detectors``
group whose name is the detector's name and whose object is its factory::

    [project.entry-points."sealgate.detectors"]
    steuer_id = "sealgate_de.detectors:steuer_id"
"""

from __future__ import annotations

from importlib.metadata import entry_points

from gateway.policy.detectors import bsn, cards, emails, iban, keywords, regex
from gateway.policy.types import DetectorFactory

ENTRY_POINT_GROUP = "sealgate.detectors"

BUILTIN: dict[str, DetectorFactory] = {
    bsn.NAME: bsn.create,
    iban.NAME: iban.create,
    cards.NAME: cards.create,
    emails.NAME: emails.create,
    keywords.NAME: keywords.create,
    regex.NAME: regex.create,
}


class DetectorPluginError(RuntimeError):
    """A third-party detector cannot be used; the message names its entry point."""


def available() -> dict[str, DetectorFactory]:
    """The built-in detectors and those installed packages declare, by name.

    Raises :class:`DetectorPluginError` for an entry point that cannot be
    loaded, is not callable, or takes a name already taken: a pack must never
    silently run a different detector than the one it names.
    """
    found = dict(BUILTIN)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        where = f"detector {point.name!r} (entry point {point.value!r} in {ENTRY_POINT_GROUP})"
        if point.name in BUILTIN:
            raise DetectorPluginError(f"{where} clashes with the built-in detector of that name")
        if point.name in found:
            raise DetectorPluginError(f"{where} is declared by more than one package")
        try:
            factory = point.load()
        except Exception as error:  # any import-time failure of a third-party package
            raise DetectorPluginError(
                f"{where} cannot be loaded: {type(error).__name__}: {error}"
            ) from error
        if not callable(factory):
            raise DetectorPluginError(f"{where} is not a factory: it is not callable")
        found[point.name] = factory
    return found
