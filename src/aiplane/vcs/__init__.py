"""Version-control hosts (GitHub, GitLab, a local stand-in) behind one small interface.

This package knows comments, threads, statuses and approvals; it knows nothing about reviews.
"""
