"""An example third-party learner package for playpen."""
