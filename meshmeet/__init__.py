"""meshmeet: village meetings over an encrypted mesh of commune halls.

This package must never start threads, sockets or event loops on import.
"""

__version__ = "0.1.0"
