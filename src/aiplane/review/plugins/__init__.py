"""Review plugins (pluggy): hook specs, the context plugins contribute through, and the host that
runs the lifecycle. Built-in plugins live in `builtin/`, registered through the same entry-point
group (`aiplane.review_plugins`) third parties use."""
