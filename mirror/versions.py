"""API versions, and the version comparison Patchwork itself uses."""

VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4")
LATEST = VERSIONS[-1]


def has_version(requested: str | None, needed: str) -> bool:
    """True if a request for API ``requested`` sees things added in ``needed``.

    Patchwork compares the dotted strings split on '.' as lists of strings,
    and an unversioned request means the latest version.  Reproducing the
    exact comparison keeps the quirky version segments Patchwork accepts
    (``/api/1x4/``) behaving as they do upstream.
    """
    if not requested:
        return True
    return requested.split(".") >= needed.split(".")
