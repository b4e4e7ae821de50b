"""newsmonitor: a self-hosted media-monitoring daemon.

Data flows one way: fetch -> parse -> extract -> dedup/cluster -> store -> alert.
"""

__version__ = "0.1.0"
