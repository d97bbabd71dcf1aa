"""babytrain's shared package: every task script builds its pieces from here."""
