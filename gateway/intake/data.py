"""The message data of DATA (RFC 5321 4.1.1.4), taken in as it arrives.

aiosmtpd reads DATA line by line into a list, then joins and unstuffs it: a
36 MB message costs half a million reads and several copies of itself. Here the
data comes in chunks (up to the next ".CRLF", or as much as the stream buffers),
each chunk is dot-unstuffed and checked as it comes and written into one buffer,
and the message is that buffer, handed on without another copy. What is kept is
what aiosmtpd's ``original_content`` holds: the lines as sent, CRLF line ends,
without the terminating ".CRLF" and without the dot that starts a stuffed line.

A CR or an LF that is not part of a CRLF anywhere in the data, or a NUL, makes
the message refused (SMTP smuggling, RFC 5321 2.3.8): the counts of CR, LF and
CRLF are kept per chunk (a CRLF split between two chunks counted once), and
every CR and LF belongs to a CRLF exactly when the three counts are equal.
"""

from __future__ import annotations

import asyncio
import io

_CRLF = b"\r\n"
END = b"\r\n.\r\n"  # the end of the data: a line with a lone dot
_TERMINATOR = b".\r\n"


class DataReceiver:
    """One message's data, fed chunk by chunk in the order received.

    A chunk may end anywhere, but a ".CRLF" that ends the data must end a chunk,
    whole (:func:`read_chunk` gives such chunks; the CRLF before it may come in
    the chunk before). Once :meth:`drop` was called, only the end of the data is
    looked for.
    """

    def __init__(self) -> None:
        self.size = 0  # bytes received, as sent (stuffed, with the terminator)
        self.done = False
        self._buffer: io.BytesIO | None = io.BytesIO()
        # The two bytes received before the next chunk. The data starts a line,
        # just after the CRLF of the DATA command.
        self._before = _CRLF
        self._cr = self._lf = self._crlf = 0
        self._nul = False

    def feed(self, chunk: bytes) -> bool:
        """Take ``chunk``; whether it ended the data."""
        if self.done:
            raise ValueError("the data has ended")
        self.size += len(chunk)
        ended = chunk.endswith(_TERMINATOR) and (self._before + chunk[-5:])[-5:] == END
        if self._buffer is not None:
            piece = chunk[:-3] if ended else chunk
            self._check(piece)
            self._buffer.write(unstuffed(self._before, piece))
        self._before = (self._before + chunk[-2:])[-2:]
        self.done = ended
        return ended

    def _check(self, piece: bytes) -> None:
        self._cr += piece.count(b"\r")
        self._lf += piece.count(b"\n")
        self._crlf += piece.count(_CRLF)
        if self._before[-1:] == b"\r" and piece[:1] == b"\n":
            self._crlf += 1
        self._nul = self._nul or b"\0" in piece

    def drop(self) -> None:
        """Keep nothing more: the message is refused, only its end matters now."""
        self._buffer = None

    @property
    def bare_line_end(self) -> bool:
        """Whether a CR or LF outside a CRLF came so far."""
        return not self._cr == self._lf == self._crlf

    @property
    def nul(self) -> bool:
        return self._nul

    def content(self) -> bytes:
        """The message: CRLF lines, unstuffed, without the terminator (after the end only).

        ``BytesIO.getvalue`` hands over its own buffer, trimmed to size, instead of
        a copy; the receiver lets go of it.
        """
        if not self.done or self._buffer is None:
            raise ValueError("no content: the data has not ended, or was dropped")
        content = self._buffer.getvalue()
        self._buffer = None
        return content


async def read_chunk(reader: asyncio.StreamReader) -> bytes | None:
    """The next chunk of DATA, None if the stream ended first.

    The chunk runs up to and including the next ".CRLF", or is as much as the
    reader holds when none comes within its limit; so a ".CRLF" is never split.
    """
    try:
        return await reader.readuntil(_TERMINATOR)
    except asyncio.LimitOverrunError as overrun:
        return await reader.read(overrun.consumed)
    except asyncio.IncompleteReadError:
        return None


def unstuffed(before: bytes, piece: bytes) -> bytes:
    """``piece`` without the dot that starts each of its lines (RFC 5321 4.5.2).

    ``before``: the two bytes received before ``piece``, so that a line start on
    the boundary is seen: a piece that starts with the dot after a CRLF, or with
    the LF and the dot after a CR. ``bytes.replace`` removes one dot per line, so a
    line sent as "...x" becomes "..x". A piece without a dot (base64 has none) is
    not searched further, nor copied.
    """
    if before == _CRLF and piece[:1] == b".":
        piece = piece[1:]
    elif before[-1:] == b"\r" and piece[:2] == b"\n.":
        piece = b"\n" + piece[2:]
    return piece.replace(b"\r\n.", _CRLF) if b"." in piece else piece
