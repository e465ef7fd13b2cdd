"""The Engineering Codex: standards as rules with stable IDs, served as a skill, cited in reviews, audited."""
