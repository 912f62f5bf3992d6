"""Bearer tokens from a file (re-read when it changes) or inline, compared in constant time."""

from __future__ import annotations

import hmac
import logging
import os

from costctx.extensions.bearertokenauth.config import BearerTokenAuthConfig

log = logging.getLogger("costctx.auth")


class TokenError(ValueError):
    """No usable token at start: the sidecar must not run open by accident."""


class BearerTokens:
    def __init__(self, config: BearerTokenAuthConfig) -> None:
        self.scheme = config.scheme.lower()
        self.filename = config.filename
        self._stamp: tuple[int, int, int] | None = None
        self._tokens: list[bytes] = []
        if config.token is not None:
            self._tokens = [config.token.strip().encode()]
        else:
            self._reload()
            if not self._tokens:
                raise TokenError(f"bearertokenauth: no token in {self.filename}")

    def _reload(self) -> None:
        """Re-read the file if its inode, size or mtime changed (a cheap stat per request).

        A file that is briefly missing or empty (a secret being rotated) keeps the tokens we
        had: failing open is not an option and failing everything is an outage."""
        assert self.filename is not None
        try:
            st = os.stat(self.filename)
        except OSError as exc:
            if self._stamp is not None:
                log.warning("bearertokenauth: cannot stat %s (%s); keeping the current tokens", self.filename, exc)
                self._stamp = None
            if not self._tokens:
                raise TokenError(f"bearertokenauth: cannot read {self.filename}: {exc.strerror}") from None
            return
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return
        try:
            with open(self.filename, "rb") as handle:
                tokens = [line.strip() for line in handle.read().splitlines() if line.strip()]
        except OSError as exc:
            log.warning("bearertokenauth: cannot read %s (%s); keeping the current tokens", self.filename, exc)
            return
        self._stamp = stamp
        if not tokens:
            log.warning("bearertokenauth: %s is empty; keeping the current tokens", self.filename)
            return
        if self._tokens:
            log.info("bearertokenauth: reloaded %d token(s) from %s", len(tokens), self.filename)
        self._tokens = tokens

    def valid(self, authorization: str | bytes | None) -> bool:
        """True if the `authorization` header/metadata value carries a current token."""
        if self.filename is not None:
            self._reload()
        if not authorization:
            return False
        if isinstance(authorization, str):
            authorization = authorization.encode("utf-8", "replace")
        scheme, _, presented = authorization.strip().partition(b" ")
        if scheme.lower() != self.scheme.encode() or not presented:
            return False
        presented = presented.strip()
        # Compare against every current token without an early exit: constant time per token.
        ok = False
        for token in self._tokens:
            ok |= hmac.compare_digest(presented, token)
        return ok
