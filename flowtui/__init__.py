"""flowtui: a continuous email-flow monitor for the terminal."""

__version__ = "0.1.0"
