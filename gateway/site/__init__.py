"""Patchwork's site from the mirror: downloads (mboxes, diffs) and pages to read patches."""
