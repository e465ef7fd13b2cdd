"""Reading repositories as data: isolated git, and bounded no-follow views of trees."""
