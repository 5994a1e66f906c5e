"""First-party, server-side event gateway for the TikTok Events API."""

__version__ = "0.1.0"
