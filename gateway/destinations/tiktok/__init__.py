"""TikTok Events API: config, transform, HTTP client and answer classification."""
