"""The one exception of the wire codec: whose fault it is, is in the name."""


class FrameError(Exception):
    """The peer sent something malformed.

    The only exception any decode function of `wire` raises. The receiver closes
    the connection that carried it, logs the reason and carries on.
    """
