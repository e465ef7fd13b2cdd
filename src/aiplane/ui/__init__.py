"""The admin dashboard served by the gateway at /ui."""
