"""Small adapters between signoff and agent frameworks (LangGraph, OpenAI Agents SDK,
Pydantic AI, Anthropic SDK). Each module imports only its own framework."""
