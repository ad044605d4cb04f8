"""OTLP/HTTP trace receiver: GenAI spans of an agent stack, live, into the run (docs/agents.md)."""
